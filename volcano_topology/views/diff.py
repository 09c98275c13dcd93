"""Diff."""

from __future__ import annotations

import argparse


def add_diff_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pass
