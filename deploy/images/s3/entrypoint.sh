#!/bin/sh
# Takes MinIO's command line, `server DIR [--address [HOST]:PORT] [--console-address ...]`,
# so that compose.yaml's command for the s3 service needs no change: moto_server listens on
# every address at PORT (9000 by default). Anything else is moto_server's own arguments.
if [ "${1:-}" = server ]; then
    port=9000
    shift
    while [ $# -gt 0 ]; do
        case $1 in
            --address) port=${2##*:}; shift 2 ;;
            --address=*) port=${1##*:}; shift ;;
            *) shift ;;
        esac
    done
    set -- -H 0.0.0.0 -p "$port"
fi
exec /opt/moto/bin/moto_server "$@"
