# bash completion for portctl(1)
#
# Completes the commands, each command's options, lease ids for `renew` and
# `release` and leased ports for `release --port` (from `portctl list --json`,
# asking the daemon the command line names with --socket, for at most a
# second), and CMD of `portctl run` as a command of its own.

_portctl_leases()
{
	# $1: "id" or "ports"; the rest: portctl and the --socket/--timeout words.
	local what=$1 json
	shift
	json=$("$@" --timeout 1000 list --json 2>/dev/null) || return
	if [[ $what == id ]]; then
		grep -o '"id": *[0-9]*' <<<"$json" | grep -o '[0-9]*$'
	else
		grep -o '"ports": *\[[0-9, ]*\]' <<<"$json" | grep -o '[0-9][0-9]*'
	fi
}

_portctl()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	local commands="lease run renew release list status ports help"
	local global="--socket --timeout --json --help --version"
	local shape="--ttl --count --consecutive --port --exclude --tcp --udp --both"
	local -a conn=("${COMP_WORDS[0]}")
	local cmd="" nargs=0 dashdash="" byport="" i w

	# Find the command and its arguments so far; skip options and their values.
	for ((i = 1; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		if [[ -z $dashdash && $w == -- ]]; then
			dashdash=1
		elif [[ -z $dashdash && $w == -?* ]]; then
			case $w in
			--socket | --timeout)
				conn+=("$w" "${COMP_WORDS[i+1]}")
				((i++))
				;;
			--socket=* | --timeout=*)
				conn+=("$w")
				;;
			--port)
				byport=1
				((i++))
				;;
			--ttl | --count | --exclude | --pid)
				((i++))
				;;
			esac
		elif [[ -z $cmd ]]; then
			cmd=$w
		elif [[ $cmd == run ]]; then
			# CMD starts at word i: complete it as a command line of its own.
			if declare -F _command_offset >/dev/null; then
				_command_offset "$i"
			elif ((i == COMP_CWORD)); then
				mapfile -t COMPREPLY < <(compgen -c -- "$cur")
			else
				mapfile -t COMPREPLY < <(compgen -f -- "$cur")
			fi
			return
		else
			nargs=$((nargs + 1))
		fi
	done

	case $prev in
	--socket)
		mapfile -t COMPREPLY < <(compgen -f -- "$cur")
		return
		;;
	--pid)
		mapfile -t COMPREPLY < <(compgen -W "parent" -- "$cur")
		return
		;;
	--port)
		[[ $cmd == release ]] &&
			mapfile -t COMPREPLY < <(compgen -W "$(_portctl_leases ports "${conn[@]}")" -- "$cur")
		return
		;;
	--timeout | --ttl | --count | --exclude)
		return
		;;
	esac

	if [[ -z $cmd ]]; then
		if [[ $cur == -* ]]; then
			mapfile -t COMPREPLY < <(compgen -W "$global" -- "$cur")
		else
			mapfile -t COMPREPLY < <(compgen -W "$commands" -- "$cur")
		fi
		return
	fi
	if [[ $cmd == run && ($cur != -* || -n $dashdash) ]]; then
		mapfile -t COMPREPLY < <(compgen -c -- "$cur")
		return
	fi

	local opts="--socket --timeout --help"
	case $cmd in
	lease) opts+=" $shape --pid --json" ;;
	run) opts+=" $shape --listen --no-listen" ;;
	renew) opts+=" --ttl --json" ;;
	release) opts+=" --port --tcp --udp --json" ;;
	status) opts+=" --fds --json" ;;
	list | ports) opts+=" --json" ;;
	help)
		((nargs == 0)) && mapfile -t COMPREPLY < <(compgen -W "$commands" -- "$cur")
		return
		;;
	*) return ;;
	esac
	if [[ $cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
	elif [[ ($cmd == renew || $cmd == release) && $nargs -eq 0 && -z $byport ]]; then
		mapfile -t COMPREPLY < <(compgen -W "$(_portctl_leases id "${conn[@]}")" -- "$cur")
	fi
}

complete -F _portctl portctl
