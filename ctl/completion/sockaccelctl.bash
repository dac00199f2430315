# SPDX-License-Identifier: Apache-2.0
#
# bash completion for sockaccelctl. Installed to
# /usr/share/bash-completion/completions/sockaccelctl; to try it from the
# source tree: `source ctl/completion/sockaccelctl.bash`.

_sockaccelctl() {
    local cur prev words cword
    if declare -F _init_completion >/dev/null 2>&1; then
        _init_completion || return
    else
        # Without the bash-completion package: plain COMP_* variables.
        cur="${COMP_WORDS[COMP_CWORD]}"
        prev="${COMP_WORDS[COMP_CWORD-1]}"
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    fi

    local commands="status stats connections version ping attach detach reload flush-map policy"
    local global_opts="--socket --json --timeout --version --help"

    # Options that take a value: complete the value, not another option.
    case "$prev" in
        --socket)
            # One name per line (mapfile), so paths with spaces stay whole.
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
            return
            ;;
        --timeout | --wait | --port | --limit | --include-port | --exclude-port | \
            --include-cidr | --exclude-cidr)
            return
            ;;
        --file)
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
            return
            ;;
        --scope)
            mapfile -t COMPREPLY < <(compgen -W "opt-in host" -- "$cur")
            return
            ;;
        --include-unit | --exclude-unit)
            # Running services, as systemd names them.
            mapfile -t COMPREPLY < <(systemctl list-units --type=service --no-legend --plain 2>/dev/null |
                awk '{print $1}' | grep -- "^$cur")
            return
            ;;
        --include-cgroup | --exclude-cgroup)
            # Cgroup paths as the policy names them: below the cgroup v2 root.
            local root
            root=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts 2>/dev/null)
            [[ -n "$root" ]] || return
            mapfile -t COMPREPLY < <(cd "$root" 2>/dev/null && compgen -d -- "${cur#/}" | sed 's|^|/|')
            return
            ;;
    esac

    # The subcommand is the first word that is neither an option nor the
    # value of one.
    local i cmd=""
    for ((i = 1; i < cword; i++)); do
        case "${words[i]}" in
            --socket | --timeout) ((i++)) ;;
            -*) ;;
            *)
                cmd="${words[i]}"
                break
                ;;
        esac
    done

    if [[ -z "$cmd" ]]; then
        if [[ "$cur" == -* ]]; then
            mapfile -t COMPREPLY < <(compgen -W "$global_opts" -- "$cur")
        else
            mapfile -t COMPREPLY < <(compgen -W "$commands" -- "$cur")
        fi
        return
    fi

    local cmd_opts=""
    case "$cmd" in
        stats) cmd_opts="--watch" ;;
        connections) cmd_opts="--port --limit" ;;
        flush-map) cmd_opts="--force --wait" ;;
        policy)
            # policy show | policy set [rules]
            local sub="" j
            for ((j = i + 1; j < cword; j++)); do
                [[ "${words[j]}" == -* ]] || { sub="${words[j]}"; break; }
            done
            if [[ -z "$sub" ]]; then
                mapfile -t COMPREPLY < <(compgen -W "show set" -- "$cur")
                return
            fi
            [[ "$sub" == set ]] && cmd_opts="--include-port --exclude-port --include-cidr \
--exclude-cidr --include-cgroup --exclude-cgroup --include-unit --exclude-unit --scope --file \
--clear --apply-existing --wait"
            ;;
    esac
    mapfile -t COMPREPLY < <(compgen -W "$cmd_opts --json --socket --timeout --help" -- "$cur")
}

complete -F _sockaccelctl sockaccelctl
