/*
 * Admission control: the receive deadline, the soft connection limit and the missed FIN
 * (see admission.h for why libmicrohttpd needs them).
 *
 * The watchdog thread notes each hang-up when it comes (its own epoll set, level-triggered
 * EPOLLRDHUP) and walks the open connections once every CHECK_INTERVAL_MS, shutting down
 * what is due. A hang-up never needs acting on at once (it has HALF_CLOSE_GRACE_MS), and a
 * walk per hang-up cost O(connections) each: at 10k streams the callers leaving after
 * their answers took a fifth of the proxy's CPU, under the lock every server thread takes.
 * Records of closed connections are freed by the watchdog itself, at the top of its next
 * wake-up, so an event that epoll returned for a connection closed meanwhile never points
 * at freed memory.
 */
#include "admission.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mutant.h"

QP_MUTANT_EDITABLE struct qp_admission_policy qp_admission_policy = {.half_close_watch = true};

/* How often deadlines are checked: their precision. */
#define CHECK_INTERVAL_MS 100
/* A peer that hung up may still have sent a whole request that libmicrohttpd is about to
 * read and answer (HTTP/1.0 clients half-close after sending): give it this long. Short,
 * since each such connection holds a slot meanwhile (a flood of them at a few thousand a
 * second must not fill the table). */
#define HALF_CLOSE_GRACE_MS 150
/* An over-the-limit connection gets its 503 as soon as its head is in; it may not wait. */
#define OVER_LIMIT_RECEIVE_MS 2000

struct qp_conn {
    struct qp_conn *prev, *next; /* the open list (newest first), or `next` in the graveyard */
    int fd;                      /* borrowed from libmicrohttpd */
    bool over_limit;
    bool receiving;         /* a request is awaited or arriving: the deadline applies */
    bool in_request;        /* between a request's head and the end of its answer */
    bool watched;           /* in the watchdog's epoll set */
    bool cut;               /* shut down by us; libmicrohttpd has yet to close it */
    bool closed;            /* libmicrohttpd is done with it; freed by the watchdog */
    int64_t deadline_ms;    /* while receiving */
    int64_t peer_closed_ms; /* when EPOLLRDHUP was seen while receiving, else 0 */
};

struct qp_admission {
    struct qp_admission_config cfg;
    pthread_mutex_t lock;
    pthread_t thread;
    bool thread_started;
    int epfd;
    int wakefd;
    /* Under lock. */
    bool stopping;
    bool draining;
    struct qp_conn *open;   /* newest first */
    struct qp_conn *oldest; /* the open list's tail */
    struct qp_conn *graveyard;
    unsigned open_count;
    unsigned cut_open; /* of open_count, those shut down by us and not yet closed */
    unsigned long cuts;
    unsigned long rounds; /* walks of the open list */
};

static void
watch_locked(struct qp_admission *adm, struct qp_conn *c)
{
    if (c->watched)
        return;
    struct epoll_event ev = {.events = EPOLLRDHUP, .data.ptr = c};
    c->watched = epoll_ctl(adm->epfd, EPOLL_CTL_ADD, c->fd, &ev) == 0;
}

static void
unwatch_locked(struct qp_admission *adm, struct qp_conn *c)
{
    if (!c->watched)
        return;
    epoll_ctl(adm->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    c->watched = false;
}

static void
start_receiving_locked(struct qp_admission *adm, struct qp_conn *c, int64_t allowed_ms)
{
    c->receiving = true;
    c->deadline_ms = qk_now_ms() + allowed_ms;
    c->peer_closed_ms = 0;
    watch_locked(adm, c);
}

/* libmicrohttpd's next read on the socket sees the end and closes the connection. */
static void
cut_locked(struct qp_admission *adm, struct qp_conn *c)
{
    shutdown(c->fd, SHUT_RDWR);
    if (!c->cut)
        adm->cut_open++;
    c->cut = true;
    c->receiving = false;
    unwatch_locked(adm, c);
    adm->cuts++;
}

static bool
unread_bytes(int fd)
{
    int n = 0;
    return ioctl(fd, FIONREAD, &n) == 0 && n > 0;
}

/* Notes the hang-ups epoll returned; acted on by the next round. */
static void
note_hangups_locked(struct qp_admission *adm, const struct epoll_event *ev, int n, int64_t now)
{
    for (int i = 0; i < n; i++) {
        struct qp_conn *c = ev[i].data.ptr;
        if (!c || c->closed)
            continue;
        /* Level-triggered: it would fire on every wake-up. A connection being answered
         * keeps its watch until now (see qp_admission_request_received()); the next
         * request's wait watches it again, and then sees the hang-up at once. */
        unwatch_locked(adm, c);
        if (c->receiving)
            c->peer_closed_ms = now;
    }
}

static void
round_locked(struct qp_admission *adm, int64_t now)
{
    adm->rounds++;
    for (struct qp_conn *c = adm->open; c; c = c->next) {
        if (!c->receiving)
            continue;
        bool late = now >= c->deadline_ms;
        bool hung_up = qp_admission_policy.half_close_watch && c->peer_closed_ms &&
                       now - c->peer_closed_ms >= HALF_CLOSE_GRACE_MS && !unread_bytes(c->fd);
        if (late || hung_up)
            cut_locked(adm, c);
    }
}

static void
free_graveyard_locked(struct qp_admission *adm)
{
    while (adm->graveyard) {
        struct qp_conn *c = adm->graveyard;
        adm->graveyard = c->next;
        free(c);
    }
}

static void *
watchdog_main(void *arg)
{
    struct qp_admission *adm = arg;
    struct epoll_event ev[64];
    int64_t next_round = qk_now_ms() + CHECK_INTERVAL_MS;
    for (;;) {
        pthread_mutex_lock(&adm->lock);
        free_graveyard_locked(adm);
        bool stopping = adm->stopping;
        pthread_mutex_unlock(&adm->lock);
        if (stopping)
            break;
        int64_t wait = next_round - qk_now_ms();
        int n =
            epoll_wait(adm->epfd, ev, (int)(sizeof(ev) / sizeof(ev[0])), wait > 0 ? (int)wait : 0);
        if (n < 0 && errno != EINTR)
            break;
        int64_t now = qk_now_ms();
        pthread_mutex_lock(&adm->lock);
        note_hangups_locked(adm, ev, n > 0 ? n : 0, now);
        if (now >= next_round) {
            round_locked(adm, now);
            next_round = now + CHECK_INTERVAL_MS;
        }
        pthread_mutex_unlock(&adm->lock);
    }
    return NULL;
}

enum qk_err
qp_admission_start(const struct qp_admission_config *cfg, struct qp_admission **out)
{
    *out = NULL;
    struct qp_admission *adm = calloc(1, sizeof(*adm));
    if (!adm)
        return QK_NOMEM;
    adm->cfg = *cfg;
    adm->epfd = epoll_create1(EPOLL_CLOEXEC);
    adm->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    pthread_mutex_init(&adm->lock, NULL);
    struct epoll_event wake = {.events = EPOLLIN, .data.ptr = NULL};
    if (adm->epfd < 0 || adm->wakefd < 0 ||
        epoll_ctl(adm->epfd, EPOLL_CTL_ADD, adm->wakefd, &wake) != 0 ||
        pthread_create(&adm->thread, NULL, watchdog_main, adm) != 0) {
        qp_admission_stop(adm);
        return QK_START;
    }
    adm->thread_started = true;
    *out = adm;
    return QK_OK;
}

void
qp_admission_stop(struct qp_admission *adm)
{
    if (!adm)
        return;
    if (adm->thread_started) {
        pthread_mutex_lock(&adm->lock);
        adm->stopping = true;
        pthread_mutex_unlock(&adm->lock);
        uint64_t one = 1;
        if (write(adm->wakefd, &one, sizeof(one)) < 0) {
            /* the watchdog still stops within CHECK_INTERVAL_MS */
        }
        pthread_join(adm->thread, NULL);
    }
    free_graveyard_locked(adm);
    while (adm->open) {
        struct qp_conn *c = adm->open;
        adm->open = c->next;
        free(c);
    }
    if (adm->epfd >= 0)
        close(adm->epfd);
    if (adm->wakefd >= 0)
        close(adm->wakefd);
    pthread_mutex_destroy(&adm->lock);
    free(adm);
}

/*
 * At the limit, the oldest connection that has not sent a whole request head (idle,
 * slow, or half-closed) makes room: it costs nobody a request in progress, and the ones
 * an attacker holds are exactly these. @return true when one was shut down.
 */
static bool
shed_oldest_idle_locked(struct qp_admission *adm)
{
    for (struct qp_conn *c = adm->oldest; c; c = c->prev) {
        if (c->receiving && !c->in_request) {
            cut_locked(adm, c);
            return true;
        }
    }
    return false;
}

struct qp_conn *
qp_admission_opened(struct qp_admission *adm, int fd)
{
    struct qp_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->fd = fd;
    pthread_mutex_lock(&adm->lock);
    /* Connections already shut down still count until libmicrohttpd has closed them. */
    unsigned live = adm->open_count - adm->cut_open;
    c->over_limit = live >= adm->cfg.max_connections && !shed_oldest_idle_locked(adm);
    adm->open_count++;
    c->next = adm->open;
    if (adm->open)
        adm->open->prev = c;
    else
        adm->oldest = c;
    adm->open = c;
    int64_t allowed = adm->cfg.receive_timeout_ms;
    if (c->over_limit && allowed > OVER_LIMIT_RECEIVE_MS)
        allowed = OVER_LIMIT_RECEIVE_MS;
    start_receiving_locked(adm, c, allowed);
    pthread_mutex_unlock(&adm->lock);
    return c;
}

void
qp_admission_closed(struct qp_admission *adm, struct qp_conn *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&adm->lock);
    unwatch_locked(adm, c);
    c->closed = true;
    c->receiving = false;
    if (c->cut)
        adm->cut_open--;
    if (c->prev)
        c->prev->next = c->next;
    else
        adm->open = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        adm->oldest = c->prev;
    c->prev = NULL;
    c->next = adm->graveyard;
    adm->graveyard = c;
    adm->open_count--;
    pthread_mutex_unlock(&adm->lock);
}

bool
qp_conn_over_limit(const struct qp_conn *c)
{
    return !c || c->over_limit;
}

void
qp_admission_request_begun(struct qp_admission *adm, struct qp_conn *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&adm->lock);
    c->in_request = true;
    pthread_mutex_unlock(&adm->lock);
}

void
qp_admission_request_received(struct qp_admission *adm, struct qp_conn *c)
{
    if (!c)
        return;
    /* The watch stays in the epoll set while the request is answered: taking it out here
     * and back for the next request cost two system calls a request on the server thread.
     * A hang-up meanwhile only wakes the watchdog once (check_locked()). */
    pthread_mutex_lock(&adm->lock);
    if (!c->closed)
        c->receiving = false;
    pthread_mutex_unlock(&adm->lock);
}

void
qp_admission_awaiting_request(struct qp_admission *adm, struct qp_conn *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&adm->lock);
    c->in_request = false;
    if (!c->closed) {
        start_receiving_locked(adm, c, adm->cfg.idle_timeout_ms + adm->cfg.receive_timeout_ms);
        if (adm->draining)
            cut_locked(adm, c);
    }
    pthread_mutex_unlock(&adm->lock);
}

void
qp_admission_drain(struct qp_admission *adm)
{
    pthread_mutex_lock(&adm->lock);
    adm->draining = true;
    for (struct qp_conn *c = adm->open; c; c = c->next) {
        if (c->receiving && !c->in_request)
            cut_locked(adm, c);
    }
    pthread_mutex_unlock(&adm->lock);
}

unsigned
qp_admission_open_count(struct qp_admission *adm)
{
    pthread_mutex_lock(&adm->lock);
    unsigned n = adm->open_count;
    pthread_mutex_unlock(&adm->lock);
    return n;
}

unsigned long
qp_admission_round_count(struct qp_admission *adm)
{
    pthread_mutex_lock(&adm->lock);
    unsigned long n = adm->rounds;
    pthread_mutex_unlock(&adm->lock);
    return n;
}

unsigned long
qp_admission_cut_count(struct qp_admission *adm)
{
    pthread_mutex_lock(&adm->lock);
    unsigned long n = adm->cuts;
    pthread_mutex_unlock(&adm->lock);
    return n;
}
