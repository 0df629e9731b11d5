"""`python -m clusterbench` is the same as the `clusterbench` command."""

from clusterbench.cli import main

if __name__ == "__main__":
    main()
