#!/bin/sh
# Render /etc/app/app.conf (sed) and /srv/www/index.html (envsubst) from the APP_* variables,
# then replace this shell with busybox httpd on the port that the rendered config names.
set -eu

templates=/usr/share/shell-entrypoint
mkdir -p /etc/app /srv/www

sed -e "s|@APP_NAME@|$APP_NAME|g" \
    -e "s|@APP_PORT@|$APP_PORT|g" \
    -e "s|@APP_REGION@|$APP_REGION|g" \
    "$templates/app.conf.template" > /etc/app/app.conf

envsubst '${APP_NAME} ${APP_GREETING} ${APP_REGION} ${APP_PORT}' \
    < "$templates/index.html.template" > /srv/www/index.html
cp /etc/app/app.conf /srv/www/app.conf

port=$(sed -n 's/^port=//p' /etc/app/app.conf)
echo "shell-entrypoint: serving /srv/www on 127.0.0.1:$port" >&2
exec busybox httpd -f -p "127.0.0.1:$port" -h /srv/www
