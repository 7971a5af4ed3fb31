#!/bin/sh
# A small HTTP/1.1 responder for one request on standard input and output
# (run by dxtls's exec: endpoint, a child per connection):
#   GET /hello        "hello from the responder\n", without a length: the
#                     body ends with the connection (close_notify first)
#   GET /payload      the file $1
#   POST /sha256      the sha256 of the request body (Content-Length bytes)
# Every response closes the connection.
payload=$1
read -r method path proto
len=0
while read -r line; do
    line=$(printf '%s' "$line" | tr -d '\r')
    [ -z "$line" ] && break
    case $line in
    [Cc]ontent-[Ll]ength:*) len=$(printf '%s' "${line#*:}" | tr -d ' ') ;;
    esac
done
respond() { # status, content length; the body follows on stdout
    printf 'HTTP/1.1 %s\r\nContent-Length: %s\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n' "$1" "$2"
}
case "$method $path" in
"GET /hello")
    printf 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n'
    printf 'hello from the responder\n' ;;
"GET /payload")
    respond "200 OK" "$(wc -c < "$payload")"
    cat "$payload" ;;
"POST /sha256")
    sum=$(head -c "$len" | sha256sum | cut -d' ' -f1)
    respond "200 OK" 65
    printf '%s\n' "$sum" ;;
*)
    respond "404 Not Found" 10
    printf 'not found\n' ;;
esac
