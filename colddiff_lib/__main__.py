"""``python -m colddiff_lib train|sample|evaluate``."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
