#include <errno.h>
#include <pthread.h>
#include <threads.h>
/* C11 cnd_timedwait calls glibc's pthread_cond_timedwait from inside libc, where libfaketime
   cannot see it; routed through the dynamic symbol, libfaketime maps the faked deadline back. */
int cnd_timedwait(cnd_t *cond, mtx_t *mutex, const struct timespec *deadline) {
    switch (pthread_cond_timedwait((pthread_cond_t *)cond, (pthread_mutex_t *)mutex, deadline)) {
    case 0: return thrd_success;
    case ETIMEDOUT: return thrd_timedout;
    default: return thrd_error;
    }
}
