"""Low-level helpers every layer may use: safe streams, files, lazy imports, HTTP limits."""
