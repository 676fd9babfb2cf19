"""Every link in the README and docs/ resolves inside a clone of this repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *ROOT.glob("examples/**/*.md")]
LINK = re.compile(r"\]\(([^)\s]+)\)")
OUTSIDE = re.compile(r"(\.\./)+shared/|spec/motherduck-rest-api\.md|DESIGN\.md")


def _relative_links(doc: Path) -> list[str]:
    links = [m.group(1).split("#", 1)[0] for m in LINK.finditer(doc.read_text(encoding="utf-8"))]
    return [link for link in links if link and "://" not in link and not link.startswith("mailto:")]


class TestDocLinks:
    @pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
    def test_relative_links_resolve(self, doc: Path) -> None:
        """A relative link names a file or directory that exists in the repository."""
        missing = [link for link in _relative_links(doc) if not (doc.parent / link).exists()]
        assert missing == [], f"{doc.relative_to(ROOT)} links to missing files: {missing}"

    @pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
    def test_no_reference_to_files_outside_the_repository(self, doc: Path) -> None:
        """The design and the API contract are cited from docs/, never from outside the clone."""
        text = doc.read_text(encoding="utf-8")
        assert not OUTSIDE.search(text), f"{doc.relative_to(ROOT)} points outside the repository"

    def test_design_and_api_contract_live_in_docs(self) -> None:
        """The two documents the code and tests cite are part of the repository."""
        assert (ROOT / "docs" / "design.md").is_file()
        assert (ROOT / "docs" / "motherduck-api.md").is_file()
