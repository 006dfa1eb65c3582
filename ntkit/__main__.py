import sys

from .cli import main

if __name__ == "__main__":  # `python -m ntkit`; importing this module (e.g. by a doc tool) runs nothing
    sys.exit(main())
