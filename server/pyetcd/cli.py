"""Placeholder: cli entry point (being written)."""


def main() -> None:
    raise SystemExit("not implemented yet")
