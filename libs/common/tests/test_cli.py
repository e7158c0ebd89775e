"""The ``pulmogate`` launcher: its own commands on the standard library, others handed on."""

import pytest

from pulmogate.common import cli


def test_launcher_lists_its_commands_and_the_installed_operator_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    listed = capsys.readouterr().out
    for name in [*cli.ALL_SERVICES, "up", "health", "db", *cli.TOOLS_COMMANDS]:
        assert f"    {name}" in listed, name


def test_an_operator_command_goes_to_the_distribution_that_adds_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert set(cli.TOOLS_COMMANDS) <= set(cli.installed_commands())
    with pytest.raises(SystemExit) as exit_:
        cli.main(["user", "--help"])
    assert exit_.value.code == 0
    assert "create" in capsys.readouterr().out


def test_an_operator_command_without_its_distribution_says_where_it_lives(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A service image has no pulmogate-tools: no entry points in the group.
    monkeypatch.setattr(cli, "installed_commands", dict)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["license", "add", "hospital.lic"])
    assert exit_.value.code == 2
    message = capsys.readouterr().err
    assert "pulmogate license" in message and "pulmogate-tools" in message


def test_an_unknown_command_is_refused_with_the_choices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["migrate"])
    assert exit_.value.code == 2
    assert "invalid choice: 'migrate'" in capsys.readouterr().err
