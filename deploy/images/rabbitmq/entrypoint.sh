#!/bin/bash
# RABBITMQ_DEFAULT_USER / _PASS / _VHOST become the node's first user and vhost (RabbitMQ
# creates them when its database is new, as the public image does), then the server runs.
set -euo pipefail
conf=/etc/rabbitmq/conf.d/05-default-user.conf
: >"$conf"
[ -n "${RABBITMQ_DEFAULT_USER:-}" ] && echo "default_user = $RABBITMQ_DEFAULT_USER" >>"$conf"
[ -n "${RABBITMQ_DEFAULT_PASS:-}" ] && echo "default_pass = $RABBITMQ_DEFAULT_PASS" >>"$conf"
[ -n "${RABBITMQ_DEFAULT_VHOST:-}" ] && echo "default_vhost = $RABBITMQ_DEFAULT_VHOST" >>"$conf"
exec "$@"
