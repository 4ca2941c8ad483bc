/* dlopen-daemon: a one-request-at-a-time HTTP/1.0 server on 127.0.0.1:PORT.
 *
 * GET /NAME loads libfleet-NAME.so with dlopen(), found through the dynamic linker's search
 * path and cache, calls its fleet_answer() on the fixed input "edgetrim fleet" and returns the
 * one-line answer. GET / lists the plugin names it knows. SIGTERM stops it with status 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "plugin.h"

#define INPUT "edgetrim fleet"

static volatile sig_atomic_t stopping;

static void on_term(int signum)
{
    (void)signum;
    stopping = 1;
}

static void reply(int client, int status, const char *reason, const char *body)
{
    char header[256];
    int length = snprintf(header, sizeof header,
                          "HTTP/1.0 %d %s\r\nContent-Type: text/plain\r\n"
                          "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                          status, reason, strlen(body));
    if (write(client, header, (size_t)length) < 0 || write(client, body, strlen(body)) < 0)
        perror("dlopen-daemon: write");
}

/* Answer GET /NAME with the plugin libfleet-NAME.so; NAME is letters only. */
static void answer_plugin(int client, const char *name)
{
    char library[128], answer[512], body[768];
    void *handle;
    fleet_answer_fn function;

    for (const char *c = name; *c; c++) {
        if (!isalpha((unsigned char)*c)) {
            reply(client, 400, "Bad Request", "plugin names are letters only\n");
            return;
        }
    }
    snprintf(library, sizeof library, "libfleet-%s.so", name);
    handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        fprintf(stderr, "dlopen-daemon: %s\n", dlerror());
        snprintf(body, sizeof body, "no plugin %s\n", library);
        reply(client, 404, "Not Found", body);
        return;
    }
    function = (fleet_answer_fn)dlsym(handle, FLEET_ANSWER_SYMBOL);
    if (function == NULL || function(INPUT, answer, sizeof answer) != 0) {
        snprintf(body, sizeof body, "plugin %s failed: %s\n", library,
                 function == NULL ? dlerror() : answer);
        reply(client, 500, "Internal Server Error", body);
    } else {
        snprintf(body, sizeof body, "%s\n", answer);
        reply(client, 200, "OK", body);
    }
    dlclose(handle);
}

static void serve(int client)
{
    char request[1024], name[64];
    ssize_t length = read(client, request, sizeof request - 1);

    if (length <= 0)
        return;
    request[length] = '\0';
    if (strncmp(request, "GET / ", 6) == 0) {
        reply(client, 200, "OK", "dlopen-daemon: plugins zlib sqlite\n");
    } else if (sscanf(request, "GET /%63[^ ?] ", name) == 1) {
        answer_plugin(client, name);
    } else {
        reply(client, 400, "Bad Request", "expected GET /PLUGIN\n");
    }
}

int main(int argc, char **argv)
{
    struct sockaddr_in address = {.sin_family = AF_INET};
    struct sigaction action = {.sa_handler = on_term};
    int one = 1, listener;

    if (argc != 2) {
        fprintf(stderr, "usage: dlopen-daemon PORT\n");
        return 2;
    }
    sigaction(SIGTERM, &action, NULL);
    address.sin_port = htons((unsigned short)atoi(argv[1]));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    listener = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(listener, (struct sockaddr *)&address, sizeof address) < 0 || listen(listener, 16) < 0) {
        perror("dlopen-daemon: bind or listen");
        return 1;
    }
    fprintf(stderr, "dlopen-daemon: listening on 127.0.0.1:%s\n", argv[1]);
    while (!stopping) {
        int client = accept(listener, NULL, NULL);
        if (client < 0) {
            if (errno == EINTR)
                continue;
            perror("dlopen-daemon: accept");
            return 1;
        }
        serve(client);
        close(client);
    }
    close(listener);
    return 0;
}
