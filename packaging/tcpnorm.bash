# bash completion for tcpnorm(8)
_tcpnorm() {
	local cur prev cmd
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD-1]}
	local commands="run check rules status report lab diagnose probe suspects version help"
	if [ "$COMP_CWORD" -eq 1 ]; then
		COMPREPLY=($(compgen -W "$commands" -- "$cur"))
		return
	fi
	cmd=${COMP_WORDS[1]}
	case $prev in
	-c)
		COMPREPLY=($(compgen -f -- "$cur"))
		return
		;;
	--fault)
		COMPREPLY=($(compgen -W "wscale syn-ts ts-scramble pmtu wscale-cap ts-scramble2" -- "$cur"))
		return
		;;
	--proto)
		COMPREPLY=($(compgen -W "smtp tcp" -- "$cur"))
		return
		;;
	--domain | --local | --max-conns | --size | --timeout | --port | --bytes | --stall | --trials | --rcpt | --helo | --queue | --pcap | --since | --max-messages)
		return
		;;
	esac
	local flags=""
	case $cmd in
	run | check | rules) flags="-c --help" ;;
	status) flags="-c --json --help" ;;
	report) flags="-c --help" ;;
	lab) flags="--fault --ipv6 --size --timeout --keep --help" ;;
	diagnose) flags="--json --domain --local --max-conns --help" ;;
	probe) flags="-c --proto --port --bytes --stall --trials --rcpt --helo --force --all --json --timeout --queue --pcap --help" ;;
	suspects) flags="--since --json --max-messages --help" ;;
	help) flags="$commands" ;;
	esac
	if [ "$cmd" = report ] && [[ $cur != -* ]]; then
		# POLICY: the policy files' names in the default policy directory.
		local p
		COMPREPLY=($(for p in /etc/tcpnorm/policies.d/*.toml; do [ -e "$p" ] && basename "$p" .toml; done | grep -- "^$cur"))
		return
	fi
	if { [ "$cmd" = diagnose ] || [ "$cmd" = suspects ]; } && [[ $cur != -* ]]; then
		COMPREPLY=($(compgen -f -- "$cur"))
		return
	fi
	COMPREPLY=($(compgen -W "$flags" -- "$cur"))
}
complete -F _tcpnorm tcpnorm
