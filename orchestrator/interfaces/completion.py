"""Shell completion for bash and zsh: ``source <(orchestrator completion bash)``.

The scripts are written from the command's own parser, so they offer exactly its
commands, options and choices; a NAME is completed from the daemon's onboardings
(``orchestrator list -o name``, with the ``--api`` and ``--token-file`` already typed,
else the environment), and nothing when the daemon cannot be reached.
"""

from __future__ import annotations

import argparse
import shlex

_BASH = r"""# bash completion for orchestrator (orchestrator completion bash)
_orchestrator_names() {
    local i api=() token=()
    for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
        case "${COMP_WORDS[i]}" in
            --api) api=(--api "${COMP_WORDS[i+1]}") ;;
            --token-file) token=(--token-file "${COMP_WORDS[i+1]}") ;;
        esac
    done
    "${COMP_WORDS[0]}" list -o name "${api[@]}" "${token[@]}" 2>/dev/null | sed 's|^onboarding/||'
}

_orchestrator() {
    local cur prev command i
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    command=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${COMP_WORDS[i]}" in
            -*) ;;
            *) command="${COMP_WORDS[i]}"; break ;;
        esac
    done
    if [[ -z "$command" ]]; then
        COMPREPLY=($(compgen -W "%(commands)s --help --version" -- "$cur"))
        return
    fi
    case "$command:$prev" in
%(choices)s
    esac
    case "$prev" in
        --config|--templates|--secrets-dir|--token-file|--api-token-file|--api-read-token-file|-f|--filename)
            COMPREPLY=($(compgen -f -- "$cur")); return ;;
    esac
    if [[ "$cur" == -* ]]; then
        case "$command" in
%(options)s
        esac
        return
    fi
    case "$command" in
        %(named)s)
            COMPREPLY=($(compgen -W "$(_orchestrator_names)" -- "$cur")) ;;
        validate)
            COMPREPLY=($(compgen -d -- "$cur")) ;;
        completion)
            COMPREPLY=($(compgen -W "bash zsh" -- "$cur")) ;;
    esac
}
complete -F _orchestrator orchestrator
"""

_ZSH = r"""#compdef orchestrator
# zsh completion for orchestrator (orchestrator completion zsh)
_orchestrator_names() {
    local -a api names
    local i
    for ((i = 2; i < CURRENT; i++)); do
        case "${words[i]}" in
            --api|--token-file) api+=("${words[i]}" "${words[i+1]}") ;;
        esac
    done
    names=(${(f)"$(${words[1]} list -o name "${api[@]}" 2>/dev/null | sed 's|^onboarding/||')"})
    compadd -a names
}

_orchestrator() {
    local command
    if (( CURRENT == 2 )); then
        compadd -- %(commands)s --help --version
        return
    fi
    command="${words[2]}"
    case "$command:${words[CURRENT-1]}" in
%(zsh_choices)s
    esac
    if [[ "${words[CURRENT]}" == -* ]]; then
        case "$command" in
%(zsh_options)s
        esac
        return
    fi
    case "$command" in
        %(named)s) _orchestrator_names ;;
        validate) _files -/ ;;
        completion) compadd bash zsh ;;
        *) _files ;;
    esac
}

if [[ "$funcstack[1]" == "_orchestrator" ]]; then
    _orchestrator "$@"
else
    compdef _orchestrator orchestrator
fi
"""


def _commands(root: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in root._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(command: argparse.ArgumentParser) -> list[str]:
    return sorted(o for a in command._actions for o in a.option_strings)


def _choices(command: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Each option that takes one of a few values, with them."""
    found: dict[str, list[str]] = {}
    for action in command._actions:
        if action.option_strings and action.choices:
            for option in action.option_strings:
                found[option] = [str(c) for c in action.choices]
    return found


def _named(command: argparse.ArgumentParser) -> bool:
    """Whether the command takes an onboarding's NAME."""
    return any(a.dest == "name" and not a.option_strings for a in command._actions)


def script(shell: str, root: argparse.ArgumentParser) -> str:
    commands = _commands(root)
    words = " ".join(sorted(commands))
    named = "|".join(sorted(n for n, c in commands.items() if _named(c))) or "_none_"
    if shell == "bash":
        choices = "\n".join(
            f"        {name}:{option}) COMPREPLY=($(compgen -W {shlex.quote(' '.join(values))}"
            ' -- "$cur")); return ;;'
            for name, command in sorted(commands.items())
            for option, values in _choices(command).items()
        )
        options = "\n".join(
            f"            {name}) COMPREPLY=($(compgen -W {shlex.quote(' '.join(_options(c)))}"
            ' -- "$cur")) ;;'
            for name, c in sorted(commands.items())
        )
        return _BASH % {"commands": words, "choices": choices, "options": options, "named": named}
    choices = "\n".join(
        f"        {name}:{option}) compadd -- {' '.join(shlex.quote(v) for v in values)}; return ;;"
        for name, command in sorted(commands.items())
        for option, values in _choices(command).items()
    )
    options = "\n".join(
        f"            {name}) compadd -- {' '.join(_options(c))} ;;"
        for name, c in sorted(commands.items())
    )
    return _ZSH % {
        "commands": words,
        "zsh_choices": choices,
        "zsh_options": options,
        "named": named,
    }
