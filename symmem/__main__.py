"""``python -m symmem``: the same command line as the ``symmem`` script."""

from symmem.cli import run

if __name__ == "__main__":
    run()
