#include "conf_spawn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "qwenkit/buf.h"

extern char **environ;

enum { STOP_GRACE_MS = 3000, LINE_MAX_BYTES = 512 };

struct conf_child {
    pid_t pid;
    int stdout_fd;     /* our end of the child's stdout */
    pthread_t drainer; /* reads (and discards) stdout after the ready line */
    int drainer_running;
};

/* Keeps the child's stdout pipe empty so the child never blocks writing to it. */
static void *
drain(void *arg)
{
    struct conf_child *c = arg;
    char buf[1024];
    while (read(c->stdout_fd, buf, sizeof(buf)) > 0) {
    }
    return NULL;
}

/* Reads up to the first newline within the time left; @return QK_OK with the line. */
static enum qk_err
read_ready_line(int fd, int timeout_ms, char *line, size_t linelen)
{
    size_t used = 0;
    int64_t until = qk_now_ms() + timeout_ms;
    while (used + 1 < linelen) {
        int left = (int)(until - qk_now_ms());
        if (left <= 0)
            return QK_IO;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return QK_IO;
        ssize_t n = read(fd, line + used, 1);
        if (n <= 0)
            return QK_IO;
        if (line[used] == '\n') {
            line[used] = '\0';
            return QK_OK;
        }
        used++;
    }
    return QK_TOO_BIG;
}

enum qk_err
conf_child_start(const char *const *argv, const char *log_path, int timeout_ms,
                 struct conf_child **out, char *url, size_t urllen, char *err, size_t errlen)
{
    enum qk_err rc = QK_OK;
    int pipefd[2] = {-1, -1};
    int spawned = 0;
    posix_spawn_file_actions_t actions;
    struct conf_child *c = calloc(1, sizeof(*c));
    char line[LINE_MAX_BYTES];
    static const char prefix[] = "listening on ";

    *out = NULL;
    if (!c || posix_spawn_file_actions_init(&actions) != 0) {
        free(c);
        return QK_NOMEM;
    }
    if (pipe(pipefd) != 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        rc = QK_IO;
        goto out;
    }
    /* Close-on-exec, so a second child does not inherit this pipe and keep it open. */
    fcntl(pipefd[0], F_SETFD, FD_CLOEXEC);
    fcntl(pipefd[1], F_SETFD, FD_CLOEXEC);
    posix_spawn_file_actions_adddup2(&actions, pipefd[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, pipefd[0]);
    posix_spawn_file_actions_addclose(&actions, pipefd[1]);
    if (log_path)
        posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log_path,
                                         O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int e = posix_spawn(&c->pid, argv[0], &actions, NULL, (char *const *)argv, environ);
    if (e != 0) {
        snprintf(err, errlen, "cannot start %s: %s", argv[0], strerror(e));
        rc = QK_START;
        goto out;
    }
    spawned = 1;
    close(pipefd[1]);
    pipefd[1] = -1;
    c->stdout_fd = pipefd[0];
    pipefd[0] = -1;
    rc = read_ready_line(c->stdout_fd, timeout_ms, line, sizeof(line));
    if (rc != QK_OK || strncmp(line, prefix, sizeof(prefix) - 1) != 0) {
        snprintf(err, errlen, "%s did not print \"listening on URL\" within %d ms", argv[0],
                 timeout_ms);
        rc = QK_START;
        goto out;
    }
    snprintf(url, urllen, "%s", line + sizeof(prefix) - 1);
    if (pthread_create(&c->drainer, NULL, drain, c) == 0)
        c->drainer_running = 1;
out:
    posix_spawn_file_actions_destroy(&actions);
    if (pipefd[0] >= 0)
        close(pipefd[0]);
    if (pipefd[1] >= 0)
        close(pipefd[1]);
    if (rc != QK_OK) {
        if (spawned)
            conf_child_stop(c);
        else
            free(c);
        c = NULL;
    }
    *out = c;
    return rc;
}

/* Waits for the child to exit; @return 1 with its status, 0 on timeout. */
static int
wait_exit(pid_t pid, int timeout_ms, int *status)
{
    int64_t until = qk_now_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR))
            return r == pid;
        if (qk_now_ms() >= until)
            return 0;
        usleep(10 * 1000);
    }
}

int
conf_child_stop(struct conf_child *c)
{
    if (!c)
        return -1;
    int status = -1;
    kill(c->pid, SIGTERM);
    if (!wait_exit(c->pid, STOP_GRACE_MS, &status)) {
        kill(c->pid, SIGKILL);
        wait_exit(c->pid, STOP_GRACE_MS, &status);
    }
    /* The child is gone, so its stdout reaches end of file and the drainer ends. */
    if (c->drainer_running)
        pthread_join(c->drainer, NULL);
    if (c->stdout_fd > 0)
        close(c->stdout_fd);
    free(c);
    return status;
}

int
conf_reserve_refusing_port(unsigned *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in addr = {.sin_family = AF_INET};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(addr.sin_port);
    return fd;
}
