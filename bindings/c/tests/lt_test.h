/* lt_test.h: the few helpers the C and C++ tests share: checks that count,
 * files, threads (POSIX or Windows) and atomics. */
#ifndef LT_TEST_H
#define LT_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#else
#include <pthread.h>
#include <sched.h>
#endif

static int lt_checks = 0, lt_failures = 0;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        lt_checks++;                                                                    \
        if (!(cond)) {                                                                  \
            lt_failures++;                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);    \
        }                                                                               \
    } while (0)

/* A status check that prints both codes and the last error on failure. */
#define CHECK_STATUS(expr, want)                                                        \
    do {                                                                                \
        llamette_status lt_got_ = (expr);                                               \
        lt_checks++;                                                                    \
        if (lt_got_ != (llamette_status)(want)) {                                       \
            lt_failures++;                                                              \
            fprintf(stderr, "%s:%d: %s returned %u (%s), want %u (%s); last error: %s\n", \
                    __FILE__, __LINE__, #expr, (unsigned)lt_got_,                       \
                    llamette_status_str(lt_got_), (unsigned)(want),                     \
                    llamette_status_str(want), llamette_last_error());                  \
        }                                                                               \
    } while (0)

#define CHECK_OK(expr) CHECK_STATUS(expr, LLAMETTE_STATUS_OK)

/* Reads a whole file; NULL if it cannot. */
static unsigned char *lt_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = (unsigned char *)malloc(cap);
    for (;;) {
        if (!buf) break;
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        unsigned char *bigger = (unsigned char *)realloc(buf, cap * 2);
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    fclose(f);
    *len = n;
    return buf;
}

/* Threads. */
typedef void *(*lt_thread_fn)(void *);
#ifdef _WIN32
typedef struct {
    HANDLE h;
    lt_thread_fn fn;
    void *arg;
} lt_thread;
static DWORD WINAPI lt_thread_main(LPVOID p) {
    lt_thread *t = (lt_thread *)p;
    t->fn(t->arg);
    return 0;
}
static int lt_spawn(lt_thread *t, lt_thread_fn fn, void *arg) {
    t->fn = fn;
    t->arg = arg;
    t->h = CreateThread(NULL, 0, lt_thread_main, t, 0, NULL);
    return t->h ? 0 : -1;
}
static void lt_join(lt_thread *t) {
    WaitForSingleObject(t->h, INFINITE);
    CloseHandle(t->h);
}
static void lt_yield(void) { SwitchToThread(); }
#else
typedef struct {
    pthread_t h;
} lt_thread;
static int lt_spawn(lt_thread *t, lt_thread_fn fn, void *arg) {
    return pthread_create(&t->h, NULL, fn, arg);
}
static void lt_join(lt_thread *t) { pthread_join(t->h, NULL); }
static void lt_yield(void) { sched_yield(); }
#endif

#endif /* LT_TEST_H */
