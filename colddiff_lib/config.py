"""A run's configuration: one TOML file, read in one place.

A run (a training, a zoo model) is described by a TOML file with six tables, each optional::

    [zoo]         task = "reconstruction"       # or "generation": what the zoo build measures
    [data]        dataset = "mnist5k", image_size = 32
    [degradation] name = ..., T = ..., ...      # the degradation's constructor arguments
    [model]       preset = "cpu"                # plus any UNet argument to override
    [train]       steps = 1000, batch_size = 64, ...   # any TrainConfig field
    [sampling]    algorithm = "improved", ...   # a generator's default sampler (zoo.sampling)

:meth:`RunConfig.from_toml` reads and checks it: the command line's ``train --config``, the zoo's configs
(:func:`colddiff_lib.zoo.config_of`, which the build, ``colddiff export`` and the tests read) all come
through it. Every problem is one ValueError naming the file, the table and the key, with the nearest known
name (:func:`colddiff_lib.checks.did_you_mean`). The tables a caller builds from (the degradation, the model,
the training settings) are checked again, completely, where they are built, after the command line's
flags are merged in.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .checks import did_you_mean

__all__ = ["RunConfig", "read_toml", "TABLES", "TASKS"]

#: The tables of a run config.
TABLES = ("zoo", "sampling", "data", "degradation", "model", "train")
#: What a ``[zoo]`` table's ``task`` may say.
TASKS = ("reconstruction", "generation")


def read_toml(path, where: Optional[str] = None) -> dict:
    """The TOML file ``path`` as nested dicts: the library's one TOML reader. Every problem (no such file, a
    syntax error, not UTF-8 text, nesting deep enough to exhaust the recursion) is one ValueError starting
    with ``where`` (default: the path)."""
    path = Path(path)
    where = where or str(path)
    if not path.is_file():
        raise ValueError(f"{where}: no such file")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{where}: TOML syntax error: {err}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{where}: not a text (UTF-8 TOML) file") from None
    except RecursionError:  # 5,000 nested brackets: tomllib recurses once per level
        raise ValueError(
            f"{where}: nested too deeply (arrays or tables inside each other); a run config is "
            f"flat tables of keys"
        ) from None


@dataclass
class RunConfig:
    """The tables of a run config (each a dict, empty when the file leaves it out) and how errors name it.

    Build one with :meth:`from_toml` (a file) or :meth:`from_dict` (tables already parsed)."""

    zoo: dict = field(default_factory=dict)
    sampling: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    degradation: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    where: str = "config"

    @classmethod
    def from_toml(cls, path, where: Optional[str] = None) -> "RunConfig":
        """Read and check the TOML file ``path``; errors start with ``where`` (default: the path)."""
        where = where or str(path)
        return cls.from_dict(read_toml(path, where), where)

    @classmethod
    def from_dict(cls, tables: dict, where: str = "config") -> "RunConfig":
        """Check parsed ``tables``: known tables only, each a table; ``[zoo]`` holds a known task, ``[data]``
        and ``[sampling]`` pass :func:`~colddiff_lib.checkpoint.check_data_config` and
        :func:`~colddiff_lib.checkpoint.check_sampling_config`."""
        from .checkpoint import check_data_config, check_sampling_config

        for table, value in tables.items():
            if table not in TABLES:
                raise ValueError(
                    f"{where}: unknown table [{table}]{did_you_mean(table, TABLES)}; expected "
                    f"{', '.join(TABLES)}"
                )
            if not isinstance(value, dict):
                raise ValueError(
                    f"{where}: {table} must be a table ([{table}]), got {value!r}"
                )
        config = cls(
            **{table: dict(value) for table, value in tables.items()}, where=where
        )
        for key, value in config.zoo.items():
            if key != "task" or value not in TASKS:
                raise ValueError(
                    f'{where}: zoo.{key}: expected task = "reconstruction" or "generation", got '
                    f"{value!r}"
                )
        check_data_config(config.data, f"{where}: data")
        check_sampling_config(config.sampling, f"{where}: sampling")
        return config

    @property
    def task(self) -> Optional[str]:
        """The ``[zoo]`` table's task (``"reconstruction"``, ``"generation"``), or None without one."""
        return self.zoo.get("task")

    def tables(self) -> dict:
        """The non-empty tables, ``{name: dict}``: what the file says."""
        return {table: getattr(self, table) for table in TABLES if getattr(self, table)}
