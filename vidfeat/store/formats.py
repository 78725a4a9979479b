"""The part formats by name (the families import ``parts``; this module imports the families)."""

from __future__ import annotations

from vidfeat.errors import ConfigError
from vidfeat.store.hdf5_part import Hdf5Format
from vidfeat.store.parts import PartFormat
from vidfeat.store.zarr_part import ZarrFormat

FORMATS: dict[str, PartFormat] = {"zarr": ZarrFormat(), "hdf5": Hdf5Format()}


def get_format(name: str) -> PartFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ConfigError(
            f"Invalid part format ({name!r}). Supported: {', '.join(FORMATS)}."
        ) from None
