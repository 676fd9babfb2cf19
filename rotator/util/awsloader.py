"""botocore's model loader, minus the scan of every service it ships before loading one.

`Loader.load_service_model` first lists every service directory botocore has (~400: some
900 `listdir` and 2,800 `stat` calls) only to check that the name asked for is among
them, and a client asks twice (its API model and its endpoint rules): 12-16 ms of a
Lambda cold start spent on services rotator never uses. `DirectLoader` looks in the
asked service's own directory instead; a name that is not there goes through botocore's
own path, so an unknown service still fails as it always did (UnknownServiceError naming
the known ones). Models, versions and extras are found exactly as botocore finds them.

Imported by `rotator.util.startup.aws_client` once botocore is needed, never before.
"""

from __future__ import annotations

import os
from typing import Any

from botocore.exceptions import DataNotFoundError
from botocore.loaders import Loader, instance_cache

__all__ = ["DirectLoader", "direct_loader"]


class DirectLoader(Loader):
    @instance_cache
    def load_service_model(
        self, service_name: str, type_name: str, api_version: str | None = None
    ) -> Any:
        try:
            version = api_version or self.determine_latest_version(service_name, type_name)
            model = self.load_data(os.path.join(service_name, version, type_name))
        except DataNotFoundError:
            # Not installed (or a typo): botocore's own checks, errors and messages.
            return super().load_service_model(service_name, type_name, api_version)
        extras = self._find_extras(service_name, type_name, version)  # type: ignore[attr-defined]
        self._extras_processor.process(model, extras)  # type: ignore[attr-defined]
        return model


def direct_loader(loader: Any) -> Any:
    """A DirectLoader searching where `loader` (a session's own) searches."""
    return DirectLoader(extra_search_paths=list(loader.search_paths),
                        include_default_search_paths=False)
