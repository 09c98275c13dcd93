"""Exports."""

from __future__ import annotations

import argparse


def add_export_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pass
