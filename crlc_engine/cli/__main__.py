"""`python -m crlc_engine.cli.main`: the `crlc` command."""

from crlc_engine.cli.main.main import main

if __name__ == "__main__":
    raise SystemExit(main())
