"""``python -m fakescope``: the ``fakescope`` command."""
from fakescope.cli import app

if __name__ == "__main__":
    app(prog_name="fakescope")
