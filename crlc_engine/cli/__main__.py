"""`python -m crlc_engine.cli`: the `crlc` command."""

from crlc_engine.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
