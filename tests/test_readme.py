"""The README documents what the tool does: every command and every PS3.15 option it accepts."""

from pathlib import Path

from deid.cli import SUBCOMMANDS
from deid.dicom.options import ProfileOptions

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_command_is_documented():
    missing = [name for name in SUBCOMMANDS if f"deid {name}" not in README]
    assert not missing, f"README lacks commands: {missing}"


def test_every_profile_option_is_documented():
    missing = [name for name in ProfileOptions.option_names() if f"`{name}`" not in README]
    assert not missing, f"README lacks PS3.15 options: {missing}"


def test_readme_starts_with_the_two_setup_commands():
    head = README.split("## ")[0]
    assert "deid demo" in head and "pytest" in head
