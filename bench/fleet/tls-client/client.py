"""Fetch a URL with urllib, verifying the server against the system's default CA store."""

import ssl
import sys
import urllib.request

url = sys.argv[1]
context = ssl.create_default_context()  # OpenSSL's default paths: /usr/lib/ssl -> /etc/ssl/certs
with urllib.request.urlopen(url, context=context, timeout=10) as response:
    sys.stdout.write(f"python: {response.status} {response.read().decode()}")
