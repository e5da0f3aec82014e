#include "loop.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

/* One posted item; a node per post keeps the items free of queue fields. */
struct post_node {
    void *item;
    struct post_node *next;
};

struct qp_loop {
    int epfd;
    int wakefd;
    CURLM *multi;
    int64_t curl_due_ms; /* -1: libcurl wants no timeout call */
    /* Armed timers, a binary min-heap on (due_ms, seq) owned here (the timers are the
     * arming code's): arming and cancelling cost O(log n) at 10k streams, where a sorted
     * list walked thousands of nodes per re-arm. */
    struct qp_loop_timer **heap;
    size_t heap_len, heap_cap;
    uint64_t timer_seq;
    uint64_t rng;

    qp_loop_post_fn on_post;
    qp_loop_stop_fn on_stop;
    void *ctx;

    pthread_t thread;
    pthread_mutex_t lock;         /* guards the fields below */
    struct post_node *queue_head; /* posted items, oldest first */
    struct post_node *queue_tail;
    bool stopping;
    bool joined; /* qp_loop_stop() has joined (or is joining) the thread */

    /* Loop thread only: watched sockets by fd (epoll data carries QP_WATCH_TAG | fd). */
    struct qp_loop_watch **watches;
    size_t watches_len;

    /* Loop thread only: the batch (qp_loop_batch), oldest first. */
    struct qp_loop_batched *batch_head, *batch_tail;
};

/* epoll data of a watched socket; libcurl's sockets and the eventfd carry the bare fd. */
#define QP_WATCH_TAG (1ULL << 32)

static int
socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    struct qp_loop *loop = userp;
    if (what == CURL_POLL_REMOVE) {
        /* The socket may already be closed; nothing to do then. */
        epoll_ctl(loop->epfd, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
    ev.data.u64 = (uint64_t)(unsigned)s;
    /* libcurl keeps socketp from the first call about a socket to its REMOVE, after which
     * the socket is out of the set: unset, ADD; set, MOD. A reused connection's socket
     * comes back after a REMOVE with every transfer, where a MOD tried first failed. */
    int op = socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(loop->epfd, op, s, &ev) != 0 && (errno == ENOENT || errno == EEXIST))
        epoll_ctl(loop->epfd, errno == ENOENT ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, s, &ev);
    if (!socketp)
        curl_multi_assign(loop->multi, s, loop);
    return 0;
}

static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct qp_loop *loop = userp;
    loop->curl_due_ms = timeout_ms < 0 ? -1 : qk_now_ms() + timeout_ms;
    return 0;
}

static void
finish_transfers(struct qp_loop *loop)
{
    CURLMsg *msg = NULL;
    int left = 0;
    while ((msg = curl_multi_info_read(loop->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        struct qp_loop_transfer *t = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)(void *)&t);
        curl_multi_remove_handle(loop->multi, easy);
        if (t && t->done)
            t->done(t, result);
    }
}

/* ---- timers: a binary min-heap --------------------------------------------------- */

static bool
timer_before(const struct qp_loop_timer *a, const struct qp_loop_timer *b)
{
    return a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->seq < b->seq);
}

static void
heap_put(struct qp_loop *loop, size_t i, struct qp_loop_timer *t)
{
    loop->heap[i] = t;
    t->slot = i;
}

static void
heap_up(struct qp_loop *loop, size_t i)
{
    struct qp_loop_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(t, loop->heap[parent]))
            break;
        heap_put(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_put(loop, i, t);
}

static void
heap_down(struct qp_loop *loop, size_t i)
{
    struct qp_loop_timer *t = loop->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= loop->heap_len)
            break;
        if (child + 1 < loop->heap_len && timer_before(loop->heap[child + 1], loop->heap[child]))
            child++;
        if (!timer_before(loop->heap[child], t))
            break;
        heap_put(loop, i, loop->heap[child]);
        i = child;
    }
    heap_put(loop, i, t);
}

/* Takes the timer at slot @p i out of the heap. */
static void
heap_remove(struct qp_loop *loop, size_t i)
{
    struct qp_loop_timer *last = loop->heap[--loop->heap_len];
    if (i < loop->heap_len) {
        heap_put(loop, i, last);
        heap_up(loop, i);
        heap_down(loop, last->slot);
    }
}

static void
run_timers(struct qp_loop *loop)
{
    int64_t now = qk_now_ms();
    while (loop->heap_len > 0 && loop->heap[0]->due_ms <= now) {
        struct qp_loop_timer *t = loop->heap[0];
        heap_remove(loop, 0);
        t->armed = false;
        t->fire(t);
    }
}

/* Runs up to @p limit posted items, oldest first, or all of them once the loop is stopping
 * (they run before on_stop answers what is active); *more tells whether some are left. */
static bool
run_posted(struct qp_loop *loop, unsigned limit, bool *more)
{
    pthread_mutex_lock(&loop->lock);
    if (loop->stopping)
        limit = UINT_MAX;
    struct post_node *n = loop->queue_head, *last = NULL;
    for (unsigned taken = 0; taken < limit && n; taken++) {
        last = n;
        n = n->next;
    }
    struct post_node *first = last ? loop->queue_head : NULL;
    if (last)
        last->next = NULL;
    loop->queue_head = n;
    if (!n)
        loop->queue_tail = NULL;
    *more = n != NULL;
    bool stopping = loop->stopping;
    pthread_mutex_unlock(&loop->lock);
    for (n = first; n;) {
        struct post_node *next = n->next;
        void *item = n->item;
        free(n);
        loop->on_post(loop->ctx, item);
        n = next;
    }
    return stopping;
}

/* libcurl's timeout call, when it is due. */
static void
run_curl_due(struct qp_loop *loop)
{
    if (loop->curl_due_ms >= 0 && qk_now_ms() >= loop->curl_due_ms) {
        int running = 0;
        loop->curl_due_ms = -1;
        curl_multi_socket_action(loop->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
}

/* Runs the batch; a call queued while it runs goes in the next one. */
static void
run_batch(struct qp_loop *loop)
{
    struct qp_loop_batched *b = loop->batch_head;
    loop->batch_head = loop->batch_tail = NULL;
    while (b) {
        struct qp_loop_batched *next = b->next;
        b->next = NULL;
        b->queued = false;
        b->run(b); /* may free b */
        b = next;
    }
}

/* Ready sockets one wait returns at most: at 10k streams about 10,000 upstream events a
 * second arrive, and the pass that serves them also starts new transfers. */
#define EVENTS_PER_WAIT 512

static void *
loop_main(void *arg)
{
    struct qp_loop *loop = arg;
    struct epoll_event events[EVENTS_PER_WAIT];
    bool backlog = false; /* posted items left over from the last pass */
    for (;;) {
        int64_t now = qk_now_ms();
        int64_t wait = backlog ? 0 : 1000; /* wake at least once a second; costs nothing */
        if (loop->curl_due_ms >= 0 && loop->curl_due_ms - now < wait)
            wait = loop->curl_due_ms - now;
        if (loop->heap_len > 0 && loop->heap[0]->due_ms - now < wait)
            wait = loop->heap[0]->due_ms - now;
        if (wait < 0)
            wait = 0;
        int n = epoll_wait(loop->epfd, events, EVENTS_PER_WAIT, (int)wait);
        int running = 0;
        for (int i = 0; i < n; i++) {
            uint64_t data = events[i].data.u64;
            int fd = (int)(uint32_t)data;
            if (data & QP_WATCH_TAG) {
                /* Looked up by fd, so an event collected before the watch was forgotten
                 * fires nothing. */
                struct qp_loop_watch *w = (size_t)fd < loop->watches_len ? loop->watches[fd] : NULL;
                if (w) {
                    qp_loop_watch_forget(loop, w);
                    w->fire(w);
                }
                continue;
            }
            if (fd == loop->wakefd) {
                uint64_t v;
                ssize_t r = read(loop->wakefd, &v, sizeof(v));
                (void)r; /* a failed read only means nothing was pending */
                continue;
            }
            int flags = 0;
            if (events[i].events & EPOLLIN)
                flags |= CURL_CSELECT_IN;
            if (events[i].events & EPOLLOUT)
                flags |= CURL_CSELECT_OUT;
            if (events[i].events & (EPOLLERR | EPOLLHUP))
                flags |= CURL_CSELECT_ERR;
            curl_multi_socket_action(loop->multi, fd, flags, &running);
        }
        run_curl_due(loop);
        finish_transfers(loop);
        run_timers(loop);
        bool stopping = run_posted(loop, QP_LOOP_POSTS_PER_PASS, &backlog);
        run_curl_due(loop); /* a transfer just added starts now, not after an epoll_wait */
        finish_transfers(loop);
        run_batch(loop);
        if (stopping) {
            loop->on_stop(loop->ctx);
            /* Items posted while on_stop ran were accepted before `stopping` was set. */
            run_posted(loop, UINT_MAX, &backlog);
            run_batch(loop); /* nothing batched outlives the thread */
            break;
        }
    }
    return NULL;
}

static void
wake(struct qp_loop *loop)
{
    uint64_t one = 1;
    ssize_t r = write(loop->wakefd, &one, sizeof(one));
    (void)r; /* the counter saturating still leaves the loop awake */
}

enum qk_err
qp_loop_start(qp_loop_post_fn on_post, qp_loop_stop_fn on_stop, void *ctx, unsigned max_connects,
              struct qp_loop **out, char *err, size_t errlen)
{
    enum qk_err rc = QK_START;
    struct qp_loop *loop = calloc(1, sizeof(*loop));
    if (!loop) {
        snprintf(err, errlen, "out of memory");
        return QK_NOMEM;
    }
    loop->epfd = loop->wakefd = -1;
    loop->curl_due_ms = -1;
    loop->on_post = on_post;
    loop->on_stop = on_stop;
    loop->ctx = ctx;
    pthread_mutex_init(&loop->lock, NULL);
    if (getrandom(&loop->rng, sizeof(loop->rng), 0) != (ssize_t)sizeof(loop->rng))
        loop->rng = (uint64_t)qk_now_ms() * 0x9E3779B97F4A7C15ULL;
    loop->rng |= 1;

    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    loop->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->epfd < 0 || loop->wakefd < 0) {
        snprintf(err, errlen, "epoll/eventfd: %s", strerror(errno));
        goto out;
    }
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.u64 = (uint64_t)(unsigned)loop->wakefd;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wakefd, &ev) != 0) {
        snprintf(err, errlen, "epoll_ctl: %s", strerror(errno));
        goto out;
    }
    loop->multi = curl_multi_init();
    if (!loop->multi) {
        snprintf(err, errlen, "curl_multi_init failed");
        goto out;
    }
    curl_multi_setopt(loop->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(loop->multi, CURLMOPT_SOCKETDATA, loop);
    curl_multi_setopt(loop->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(loop->multi, CURLMOPT_TIMERDATA, loop);
    /* libcurl's default keeps 4 connections per handle in the multi, counted as transfers
     * come and go, so under load it closes idle connections it needs a moment later and
     * reconnects hundreds of times a second. No per-host cap: a stream holds its
     * connection for its whole length, and a cap would queue the next streams behind it. */
    if (max_connects > 0)
        curl_multi_setopt(loop->multi, CURLMOPT_MAXCONNECTS, (long)max_connects);
    if (pthread_create(&loop->thread, NULL, loop_main, loop) != 0) {
        snprintf(err, errlen, "pthread_create failed");
        goto out;
    }
    rc = QK_OK;
out:
    if (rc != QK_OK) {
        if (loop->multi)
            curl_multi_cleanup(loop->multi);
        if (loop->epfd >= 0)
            close(loop->epfd);
        if (loop->wakefd >= 0)
            close(loop->wakefd);
        pthread_mutex_destroy(&loop->lock);
        free(loop);
        loop = NULL;
    }
    *out = loop;
    return rc;
}

bool
qp_loop_post(struct qp_loop *loop, void *item)
{
    struct post_node *n = malloc(sizeof(*n));
    if (!n)
        return false;
    n->item = item;
    n->next = NULL;
    pthread_mutex_lock(&loop->lock);
    if (loop->stopping) {
        pthread_mutex_unlock(&loop->lock);
        free(n);
        return false;
    }
    if (loop->queue_tail)
        loop->queue_tail->next = n;
    else
        loop->queue_head = n;
    loop->queue_tail = n;
    pthread_mutex_unlock(&loop->lock);
    wake(loop);
    return true;
}

void
qp_loop_stop(struct qp_loop *loop)
{
    if (!loop)
        return;
    pthread_mutex_lock(&loop->lock);
    loop->stopping = true;
    bool running = !loop->joined;
    loop->joined = true;
    pthread_mutex_unlock(&loop->lock);
    if (!running)
        return;
    wake(loop);
    pthread_join(loop->thread, NULL);
}

void
qp_loop_free(struct qp_loop *loop)
{
    if (!loop)
        return;
    qp_loop_stop(loop);
    curl_multi_cleanup(loop->multi);
    close(loop->epfd);
    close(loop->wakefd);
    pthread_mutex_destroy(&loop->lock);
    free(loop->watches);
    free(loop->heap);
    free(loop);
}

enum qk_err
qp_loop_add(struct qp_loop *loop, struct qp_loop_transfer *t)
{
    curl_easy_setopt(t->easy, CURLOPT_PRIVATE, (void *)t);
    return curl_multi_add_handle(loop->multi, t->easy) == CURLM_OK ? QK_OK : QK_IO;
}

void
qp_loop_remove(struct qp_loop *loop, struct qp_loop_transfer *t)
{
    curl_multi_remove_handle(loop->multi, t->easy);
}

void
qp_loop_timer_cancel(struct qp_loop *loop, struct qp_loop_timer *t)
{
    if (!t->armed)
        return;
    heap_remove(loop, t->slot);
    t->armed = false;
}

void
qp_loop_timer_arm(struct qp_loop *loop, struct qp_loop_timer *t, int64_t due_ms)
{
    qp_loop_timer_cancel(loop, t);
    if (loop->heap_len == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        struct qp_loop_timer **grown = realloc(loop->heap, cap * sizeof(*grown));
        if (!grown)
            abort(); /* a timer that never fires would hang its request: fail loudly */
        loop->heap = grown;
        loop->heap_cap = cap;
    }
    t->due_ms = due_ms;
    t->seq = loop->timer_seq++;
    t->armed = true;
    heap_put(loop, loop->heap_len++, t);
    heap_up(loop, t->slot);
}

bool
qp_loop_batch(struct qp_loop *loop, struct qp_loop_batched *b)
{
    if (b->queued)
        return false;
    b->queued = true;
    b->next = NULL;
    if (loop->batch_tail)
        loop->batch_tail->next = b;
    else
        loop->batch_head = b;
    loop->batch_tail = b;
    return true;
}

uint32_t
qp_loop_random(struct qp_loop *loop)
{
    /* xorshift64*: plenty for jitter, never for secrets. */
    uint64_t x = loop->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    loop->rng = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

enum qk_err
qp_loop_watch_add(struct qp_loop *loop, struct qp_loop_watch *w, int fd)
{
    if (fd < 0)
        return QK_INVALID;
    if ((size_t)fd >= loop->watches_len) {
        size_t len = loop->watches_len ? loop->watches_len : 64;
        while (len <= (size_t)fd)
            len *= 2;
        struct qp_loop_watch **grown = realloc(loop->watches, len * sizeof(*grown));
        if (!grown)
            return QK_NOMEM;
        memset(grown + loop->watches_len, 0, (len - loop->watches_len) * sizeof(*grown));
        loop->watches = grown;
        loop->watches_len = len;
    }
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLRDHUP; /* EPOLLHUP and EPOLLERR are always reported */
    ev.data.u64 = QP_WATCH_TAG | (uint64_t)(unsigned)fd;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        return QK_IO;
    w->fd = fd;
    loop->watches[fd] = w;
    return QK_OK;
}

void
qp_loop_watch_disarm(struct qp_loop *loop, int fd)
{
    if (fd >= 0)
        epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
}

void
qp_loop_watch_forget(struct qp_loop *loop, struct qp_loop_watch *w)
{
    if (w->fd >= 0 && (size_t)w->fd < loop->watches_len && loop->watches[w->fd] == w)
        loop->watches[w->fd] = NULL;
    w->fd = -1;
}
