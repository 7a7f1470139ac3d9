/*
 * A fake UVC camera for the tests, as an LD_PRELOAD library.
 *
 * These machines have no /dev/video* and no kernel modules (no vivid, no
 * v4l2loopback), and CUSE has no mmap. So the real V4L2 code path (the
 * `v4l` crate's open, ioctl through syscall(2), mmap, poll, munmap, close)
 * is run against this interposer, which answers for configured device paths
 * the way the uvcvideo driver does, using the kernel's own <linux/videodev2.h>
 * layouts. Everything else is passed through untouched.
 *
 * Configured by the file named in FAKE_V4L2_CONFIG, one "key value" per line;
 * each "device" line starts a new device:
 *   device  /dev/video42        the node path it answers for
 *   replay  /path/cam.ewraw     frames (edgewatch's replay format), looped
 *   card    Fake Camera         QUERYCAP card name
 *   offer   MJPG                also list this format (frames stay the replay's)
 *   grant   H264                S_FMT grants this whatever is asked
 *   pad     64                  bytesperline padding per row (raw formats)
 *   control /path/control       faults, re-read on every call (see below)
 *   status  /path/status        counters written for the tests
 * The control file holds one word: "plug" (normal), "unplug" (the node is
 * gone: open fails ENOENT, the listing lacks it, an open stream gets
 * POLLERR and ENODEV), "stall" (no more frames: the reader times out), or
 * "eio ..." (the next DQBUF fails with EIO once per new content).
 * FAKE_V4L2_TRACE=1 logs each open of a fake node to stderr.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/videodev2.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_DEVICES 4
#define MAX_FDS 4096
#define MAX_BUFFERS 32
#define MAX_OFFERS 4

struct frame {
    const uint8_t *data;
    uint32_t len;
};

struct device {
    char path[256];
    char replay[512];
    char card[32];
    char control[512];
    char status[512];
    uint32_t offers[MAX_OFFERS];
    int n_offers;
    uint32_t grant;
    uint32_t pad;
    /* The replay, loaded at the first open. */
    int loaded;
    uint32_t fourcc, width, height, millihertz;
    struct frame *frames;
    uint32_t n_frames;
    /* Fault state, from the control file. */
    char last_control[64];
    int unplugged, stalled, eio_armed;
    /* Counters for the status file. */
    unsigned long opens, failed_opens, streamons, frames_out, enodev, eio;
};

struct buffer {
    void *addr;
    size_t length;
    int queued;
    struct v4l2_buffer last;
};

struct handle {
    struct device *dev;
    struct v4l2_pix_format fmt;
    int have_fmt;
    struct buffer bufs[MAX_BUFFERS];
    uint32_t n_bufs;
    uint32_t queue[MAX_BUFFERS]; /* FIFO of queued indexes */
    uint32_t q_head, q_len;
    int streaming;
    struct timespec t0;
    uint64_t next_seq;
    int nonblock;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct device devices[MAX_DEVICES];
static int n_devices = -1;
static struct handle *handles[MAX_FDS];
static DIR *dev_dirs[16];
static int dev_dir_pos[16];

static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_close)(int);
static long (*real_syscall)(long, ...);
static int (*real_ioctl)(int, unsigned long, ...);
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static int (*real_munmap)(void *, size_t);
static int (*real_poll)(struct pollfd *, nfds_t, int);
static int (*real_select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
static DIR *(*real_opendir)(const char *);
static int (*real_closedir)(DIR *);
static struct dirent *(*real_readdir)(DIR *);
static struct dirent64 *(*real_readdir64)(DIR *);

#define RESOLVE(name)                                                          \
    do {                                                                       \
        if (!real_##name)                                                      \
            *(void **)&real_##name = dlsym(RTLD_NEXT, #name);                  \
    } while (0)

static void resolve_all(void) {
    RESOLVE(open);
    RESOLVE(openat);
    RESOLVE(close);
    RESOLVE(syscall);
    RESOLVE(ioctl);
    RESOLVE(mmap);
    RESOLVE(munmap);
    RESOLVE(poll);
    RESOLVE(select);
    RESOLVE(opendir);
    RESOLVE(closedir);
    RESOLVE(readdir);
    RESOLVE(readdir64);
}

static uint32_t fourcc_of(const char *s) {
    char c[4] = {' ', ' ', ' ', ' '};
    for (int i = 0; i < 4 && s[i] && s[i] != '\n'; i++)
        c[i] = s[i];
    return v4l2_fourcc(c[0], c[1], c[2], c[3]);
}

/* Reads a whole small file with the real calls; returns its length or -1. */
static ssize_t slurp(const char *path, char *buf, size_t cap) {
    int fd = real_open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap - 1);
    real_close(fd);
    if (n < 0)
        return -1;
    buf[n] = 0;
    return n;
}

static void parse_config(void) {
    resolve_all();
    n_devices = 0;
    const char *path = getenv("FAKE_V4L2_CONFIG");
    if (!path)
        return;
    static char text[8192];
    if (slurp(path, text, sizeof text) < 0) {
        fprintf(stderr, "fake_v4l2: cannot read %s\n", path);
        return;
    }
    struct device *d = NULL;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *value = strchr(line, ' ');
        if (!value)
            continue;
        *value++ = 0;
        if (!strcmp(line, "device")) {
            if (n_devices == MAX_DEVICES)
                break;
            d = &devices[n_devices++];
            memset(d, 0, sizeof *d);
            snprintf(d->path, sizeof d->path, "%s", value);
            snprintf(d->card, sizeof d->card, "Fake UVC Camera");
        } else if (!d) {
            continue;
        } else if (!strcmp(line, "replay")) {
            snprintf(d->replay, sizeof d->replay, "%s", value);
        } else if (!strcmp(line, "card")) {
            snprintf(d->card, sizeof d->card, "%s", value);
        } else if (!strcmp(line, "control")) {
            snprintf(d->control, sizeof d->control, "%s", value);
        } else if (!strcmp(line, "status")) {
            snprintf(d->status, sizeof d->status, "%s", value);
        } else if (!strcmp(line, "offer") && d->n_offers < MAX_OFFERS) {
            d->offers[d->n_offers++] = fourcc_of(value);
        } else if (!strcmp(line, "grant")) {
            d->grant = fourcc_of(value);
        } else if (!strcmp(line, "pad")) {
            d->pad = (uint32_t)atoi(value);
        }
    }
}

static pthread_once_t config_once = PTHREAD_ONCE_INIT;

static void load_config(void) {
    pthread_once(&config_once, parse_config);
}

static struct device *device_at(const char *path) {
    load_config();
    if (!path)
        return NULL;
    for (int i = 0; i < n_devices; i++)
        if (!strcmp(devices[i].path, path))
            return &devices[i];
    return NULL;
}

static uint32_t le32(const uint8_t *p) {
    return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static int load_replay(struct device *d) {
    if (d->loaded)
        return 0;
    int fd = real_open(d->replay, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size < 24) {
        real_close(fd);
        return -1;
    }
    uint8_t *all = malloc(st.st_size);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, all + got, st.st_size - got);
        if (n <= 0)
            break;
        got += n;
    }
    real_close(fd);
    if (got != (size_t)st.st_size || memcmp(all, "EWRAW1\0\0", 8)) {
        free(all);
        return -1;
    }
    d->fourcc = le32(all + 8);
    d->width = le32(all + 12);
    d->height = le32(all + 16);
    d->millihertz = le32(all + 20);
    size_t at = 24;
    d->frames = NULL;
    d->n_frames = 0;
    while (at + 12 <= got) {
        uint32_t len = le32(all + at + 8);
        if (at + 12 + len > got)
            break;
        d->frames = realloc(d->frames, (d->n_frames + 1) * sizeof *d->frames);
        d->frames[d->n_frames].data = all + at + 12;
        d->frames[d->n_frames].len = len;
        d->n_frames++;
        at += 12 + len;
    }
    if (!d->n_frames)
        return -1;
    d->loaded = 1;
    return 0;
}

static void write_status(struct device *d) {
    if (!d->status[0])
        return;
    char text[512];
    int n = snprintf(text, sizeof text,
                     "opens %lu\nfailed_opens %lu\nstreamons %lu\nframes %lu\n"
                     "enodev %lu\neio %lu\nunplugged %d\n",
                     d->opens, d->failed_opens, d->streamons, d->frames_out,
                     d->enodev, d->eio, d->unplugged);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", d->status);
    int fd = real_open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    ssize_t w = write(fd, text, n);
    (void)w;
    real_close(fd);
    rename(tmp, d->status);
}

/* Applies the control file; called with the lock held. */
static void read_control(struct device *d) {
    if (!d->control[0])
        return;
    char text[64];
    if (slurp(d->control, text, sizeof text) < 0)
        return;
    if (!strcmp(text, d->last_control))
        return;
    snprintf(d->last_control, sizeof d->last_control, "%s", text);
    d->unplugged = !strncmp(text, "unplug", 6);
    d->stalled = !strncmp(text, "stall", 5);
    if (!strncmp(text, "eio", 3))
        d->eio_armed = 1;
    write_status(d);
}

static int is_raw(uint32_t f) {
    return f == V4L2_PIX_FMT_YUYV || f == V4L2_PIX_FMT_RGB24 ||
           f == V4L2_PIX_FMT_GREY;
}

static uint32_t bytes_per_pixel(uint32_t f) {
    return f == V4L2_PIX_FMT_RGB24 ? 3 : f == V4L2_PIX_FMT_YUYV ? 2 : 1;
}

/* The formats listed: the replay's first, then the offered ones. */
static int formats(struct device *d, uint32_t *out) {
    int n = 0;
    out[n++] = d->fourcc;
    for (int i = 0; i < d->n_offers; i++)
        if (d->offers[i] != d->fourcc)
            out[n++] = d->offers[i];
    return n;
}

static void fill_fmt(struct handle *h, struct v4l2_pix_format *f) {
    struct device *d = h->dev;
    uint32_t want = f->pixelformat;
    memset(f, 0, sizeof *f);
    /* The driver has frames in one format and one size: like a camera, it
     * grants the nearest it has, unless told to grant something else. */
    f->pixelformat = d->grant ? d->grant : d->fourcc;
    (void)want;
    f->width = d->width;
    f->height = d->height;
    f->field = V4L2_FIELD_NONE;
    f->colorspace = V4L2_COLORSPACE_SRGB;
    if (is_raw(f->pixelformat)) {
        f->bytesperline = d->width * bytes_per_pixel(f->pixelformat) + d->pad;
        f->sizeimage = f->bytesperline * d->height;
    } else {
        f->bytesperline = 0;
        f->sizeimage = d->width * d->height * 2;
    }
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static double frame_period(struct device *d) {
    return d->millihertz ? 1000.0 / d->millihertz : 1.0 / 30;
}

/* When the next frame is due; frames missed while no buffer was queued are
 * dropped, as a camera does. */
static double next_due(struct handle *h) {
    double t0 = h->t0.tv_sec + h->t0.tv_nsec / 1e9;
    return t0 + h->next_seq * frame_period(h->dev);
}

static int ready(struct handle *h) {
    return h->streaming && h->q_len > 0 && !h->dev->stalled &&
           now_s() >= next_due(h);
}

static int fail(int e) {
    errno = e;
    return -1;
}

static int dqbuf(struct handle *h, struct v4l2_buffer *b) {
    struct device *d = h->dev;
    if (d->unplugged) {
        d->enodev++;
        write_status(d);
        return fail(ENODEV);
    }
    if (!h->streaming || b->memory != V4L2_MEMORY_MMAP)
        return fail(EINVAL);
    if (d->eio_armed) {
        d->eio_armed = 0;
        d->eio++;
        write_status(d);
        return fail(EIO);
    }
    if (!ready(h))
        return fail(EAGAIN);
    double period = frame_period(d);
    double t0 = h->t0.tv_sec + h->t0.tv_nsec / 1e9;
    uint64_t seq = (uint64_t)((now_s() - t0) / period);
    if (seq < h->next_seq)
        seq = h->next_seq;
    h->next_seq = seq + 1;
    uint32_t index = h->queue[h->q_head];
    h->q_head = (h->q_head + 1) % MAX_BUFFERS;
    h->q_len--;
    struct buffer *buf = &h->bufs[index];
    buf->queued = 0;
    const struct frame *fr = &d->frames[seq % d->n_frames];
    uint32_t used;
    if (is_raw(h->fmt.pixelformat) && h->fmt.bytesperline > 0) {
        uint32_t row = d->width * bytes_per_pixel(h->fmt.pixelformat);
        for (uint32_t y = 0; y < d->height && (y + 1) * row <= fr->len; y++) {
            uint8_t *dst = (uint8_t *)buf->addr + (size_t)y * h->fmt.bytesperline;
            memcpy(dst, fr->data + (size_t)y * row, row);
            memset(dst + row, 0xAB, h->fmt.bytesperline - row);
        }
        used = h->fmt.sizeimage;
    } else {
        used = fr->len < buf->length ? fr->len : buf->length;
        memcpy(buf->addr, fr->data, used);
    }
    memset(b, 0, sizeof *b);
    b->index = index;
    b->type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    b->memory = V4L2_MEMORY_MMAP;
    b->bytesused = used;
    b->flags = V4L2_BUF_FLAG_MAPPED | V4L2_BUF_FLAG_DONE |
               V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC;
    b->field = V4L2_FIELD_NONE;
    b->sequence = (uint32_t)seq;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    b->timestamp.tv_sec = t.tv_sec;
    b->timestamp.tv_usec = t.tv_nsec / 1000;
    b->length = buf->length;
    b->m.offset = index * buf->length;
    d->frames_out++;
    write_status(d);
    return 0;
}

static int handle_ioctl(struct handle *h, unsigned long req, void *arg) {
    struct device *d = h->dev;
    read_control(d);
    if (d->unplugged && req != VIDIOC_DQBUF) {
        d->enodev++;
        return fail(ENODEV);
    }
    switch (req) {
    case VIDIOC_QUERYCAP: {
        struct v4l2_capability *c = arg;
        memset(c, 0, sizeof *c);
        snprintf((char *)c->driver, sizeof c->driver, "uvcvideo");
        snprintf((char *)c->card, sizeof c->card, "%s", d->card);
        snprintf((char *)c->bus_info, sizeof c->bus_info, "usb-0000:00:14.0-1");
        c->version = 0x060100;
        c->device_caps = V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_STREAMING |
                         V4L2_CAP_EXT_PIX_FORMAT;
        c->capabilities = c->device_caps | V4L2_CAP_META_CAPTURE |
                          V4L2_CAP_DEVICE_CAPS;
        return 0;
    }
    case VIDIOC_ENUM_FMT: {
        struct v4l2_fmtdesc *f = arg;
        uint32_t list[MAX_OFFERS + 1];
        int n = formats(d, list);
        if (f->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || f->index >= (uint32_t)n)
            return fail(EINVAL);
        uint32_t index = f->index, type = f->type;
        memset(f, 0, sizeof *f);
        f->index = index;
        f->type = type;
        f->pixelformat = list[index];
        f->flags = is_raw(list[index]) ? 0 : V4L2_FMT_FLAG_COMPRESSED;
        snprintf((char *)f->description, sizeof f->description, "%s",
                 list[index] == V4L2_PIX_FMT_MJPEG  ? "Motion-JPEG"
                 : list[index] == V4L2_PIX_FMT_YUYV ? "YUYV 4:2:2"
                                                     : "Raw");
        return 0;
    }
    case VIDIOC_ENUM_FRAMESIZES: {
        struct v4l2_frmsizeenum *s = arg;
        uint32_t list[MAX_OFFERS + 1];
        int n = formats(d, list), known = 0;
        for (int i = 0; i < n; i++)
            known |= list[i] == s->pixel_format;
        if (!known || s->index != 0)
            return fail(EINVAL);
        s->type = V4L2_FRMSIZE_TYPE_DISCRETE;
        s->discrete.width = d->width;
        s->discrete.height = d->height;
        return 0;
    }
    case VIDIOC_ENUM_FRAMEINTERVALS: {
        struct v4l2_frmivalenum *i = arg;
        if (i->index != 0 || i->width != d->width || i->height != d->height)
            return fail(EINVAL);
        i->type = V4L2_FRMIVAL_TYPE_DISCRETE;
        i->discrete.numerator = 1000;
        i->discrete.denominator = d->millihertz ? d->millihertz : 30000;
        return 0;
    }
    case VIDIOC_G_FMT: {
        struct v4l2_format *f = arg;
        if (f->type != V4L2_BUF_TYPE_VIDEO_CAPTURE)
            return fail(EINVAL);
        if (!h->have_fmt)
            fill_fmt(h, &h->fmt);
        h->have_fmt = 1;
        f->fmt.pix = h->fmt;
        return 0;
    }
    case VIDIOC_S_FMT:
    case VIDIOC_TRY_FMT: {
        struct v4l2_format *f = arg;
        if (f->type != V4L2_BUF_TYPE_VIDEO_CAPTURE)
            return fail(EINVAL);
        if (req == VIDIOC_S_FMT && h->n_bufs)
            return fail(EBUSY);
        fill_fmt(h, &f->fmt.pix);
        if (req == VIDIOC_S_FMT) {
            h->fmt = f->fmt.pix;
            h->have_fmt = 1;
        }
        return 0;
    }
    case VIDIOC_G_PARM:
    case VIDIOC_S_PARM: {
        struct v4l2_streamparm *p = arg;
        if (p->type != V4L2_BUF_TYPE_VIDEO_CAPTURE)
            return fail(EINVAL);
        memset(&p->parm.capture, 0, sizeof p->parm.capture);
        p->parm.capture.capability = V4L2_CAP_TIMEPERFRAME;
        p->parm.capture.timeperframe.numerator = 1000;
        p->parm.capture.timeperframe.denominator =
            d->millihertz ? d->millihertz : 30000;
        p->parm.capture.readbuffers = 0;
        return 0;
    }
    case VIDIOC_REQBUFS: {
        struct v4l2_requestbuffers *r = arg;
        if (r->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || r->memory != V4L2_MEMORY_MMAP)
            return fail(EINVAL);
        if (h->streaming)
            return fail(EBUSY);
        for (uint32_t i = 0; i < h->n_bufs; i++)
            if (h->bufs[i].addr)
                return fail(EBUSY);
        if (!h->have_fmt)
            fill_fmt(h, &h->fmt);
        h->have_fmt = 1;
        uint32_t count = r->count > MAX_BUFFERS ? MAX_BUFFERS : r->count;
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        size_t length = (h->fmt.sizeimage + page - 1) / page * page;
        memset(h->bufs, 0, sizeof h->bufs);
        for (uint32_t i = 0; i < count; i++)
            h->bufs[i].length = length;
        h->n_bufs = count;
        h->q_head = h->q_len = 0;
        r->count = count;
        r->capabilities = V4L2_BUF_CAP_SUPPORTS_MMAP;
        return 0;
    }
    case VIDIOC_QUERYBUF: {
        struct v4l2_buffer *b = arg;
        if (b->index >= h->n_bufs || b->memory != V4L2_MEMORY_MMAP)
            return fail(EINVAL);
        struct buffer *buf = &h->bufs[b->index];
        uint32_t index = b->index;
        memset(b, 0, sizeof *b);
        b->index = index;
        b->type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
        b->memory = V4L2_MEMORY_MMAP;
        b->length = buf->length;
        b->m.offset = index * buf->length;
        b->flags = (buf->addr ? V4L2_BUF_FLAG_MAPPED : 0) |
                   (buf->queued ? V4L2_BUF_FLAG_QUEUED : 0);
        return 0;
    }
    case VIDIOC_QBUF: {
        struct v4l2_buffer *b = arg;
        if (b->index >= h->n_bufs || b->memory != V4L2_MEMORY_MMAP ||
            h->bufs[b->index].queued || !h->bufs[b->index].addr)
            return fail(EINVAL);
        h->bufs[b->index].queued = 1;
        h->queue[(h->q_head + h->q_len) % MAX_BUFFERS] = b->index;
        h->q_len++;
        b->flags |= V4L2_BUF_FLAG_QUEUED;
        return 0;
    }
    case VIDIOC_DQBUF:
        return dqbuf(h, arg);
    case VIDIOC_STREAMON:
        if (!h->n_bufs)
            return fail(EINVAL);
        if (!h->streaming) {
            h->streaming = 1;
            clock_gettime(CLOCK_MONOTONIC, &h->t0);
            h->next_seq = 0;
            d->streamons++;
            write_status(d);
        }
        return 0;
    case VIDIOC_STREAMOFF:
        h->streaming = 0;
        for (uint32_t i = 0; i < h->n_bufs; i++)
            h->bufs[i].queued = 0;
        h->q_head = h->q_len = 0;
        return 0;
    default:
        return fail(ENOTTY);
    }
}

static struct handle *handle_of(int fd) {
    return fd >= 0 && fd < MAX_FDS ? handles[fd] : NULL;
}

static int fake_ioctl(int fd, unsigned long req, void *arg, int *handled) {
    pthread_mutex_lock(&lock);
    struct handle *h = handle_of(fd);
    *handled = h != NULL;
    int r = 0;
    if (h)
        r = handle_ioctl(h, req, arg);
    int e = errno;
    pthread_mutex_unlock(&lock);
    errno = e;
    return r;
}

static int fake_open(struct device *d, int flags) {
    pthread_mutex_lock(&lock);
    read_control(d);
    d->opens++;
    int e = 0;
    if (d->unplugged) {
        d->failed_opens++;
        e = ENOENT;
    } else if (load_replay(d) < 0) {
        fprintf(stderr, "fake_v4l2: cannot load replay %s\n", d->replay);
        e = EIO;
    }
    int fd = -1;
    if (!e) {
        /* A real descriptor, so the process's fd count is honest. */
        fd = real_open("/dev/null", O_RDWR | (flags & O_CLOEXEC));
        if (fd >= 0 && fd < MAX_FDS) {
            struct handle *h = calloc(1, sizeof *h);
            h->dev = d;
            h->nonblock = (flags & O_NONBLOCK) != 0;
            handles[fd] = h;
        } else {
            e = EMFILE;
        }
    }
    write_status(d);
    if (getenv("FAKE_V4L2_TRACE"))
        fprintf(stderr, "fake_v4l2: %.3f open %s: %s\n", now_s(), d->path, e ? strerror(e) : "ok");
    pthread_mutex_unlock(&lock);
    if (e)
        return fail(e);
    return fd;
}

int open(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = va_arg(ap, mode_t);
    va_end(ap);
    struct device *d = device_at(path);
    if (d)
        return fake_open(d, flags);
    RESOLVE(open);
    return real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...) __attribute__((alias("open")));

int openat(int dirfd, const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = va_arg(ap, mode_t);
    va_end(ap);
    struct device *d = path[0] == '/' ? device_at(path) : NULL;
    if (d)
        return fake_open(d, flags);
    RESOLVE(openat);
    return real_openat(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
    __attribute__((alias("openat")));

int close(int fd) {
    RESOLVE(close);
    pthread_mutex_lock(&lock);
    struct handle *h = handle_of(fd);
    if (h) {
        handles[fd] = NULL;
        free(h);
    }
    pthread_mutex_unlock(&lock);
    return real_close(fd);
}

long syscall(long number, ...) {
    va_list ap;
    va_start(ap, number);
    long a[6];
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    if (number == SYS_ioctl) {
        int handled;
        int r = fake_ioctl((int)a[0], (unsigned long)a[1], (void *)a[2], &handled);
        if (handled)
            return r;
    }
    RESOLVE(syscall);
    return real_syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

int ioctl(int fd, unsigned long req, ...) {
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    int handled;
    int r = fake_ioctl(fd, req, arg, &handled);
    if (handled)
        return r;
    RESOLVE(ioctl);
    return real_ioctl(fd, req, arg);
}

void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset) {
    RESOLVE(mmap);
    pthread_mutex_lock(&lock);
    struct handle *h = handle_of(fd);
    if (!h) {
        pthread_mutex_unlock(&lock);
        return real_mmap(addr, length, prot, flags, fd, offset);
    }
    void *out = MAP_FAILED;
    int e = EINVAL;
    for (uint32_t i = 0; i < h->n_bufs; i++) {
        struct buffer *b = &h->bufs[i];
        if ((off_t)(i * b->length) == offset && length <= b->length && !b->addr) {
            out = real_mmap(addr, b->length, prot, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
            e = errno;
            if (out != MAP_FAILED)
                b->addr = out;
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    if (out == MAP_FAILED)
        errno = e;
    return out;
}

void *mmap64(void *, size_t, int, int, int, off_t) __attribute__((alias("mmap")));

int munmap(void *addr, size_t length) {
    RESOLVE(munmap);
    pthread_mutex_lock(&lock);
    for (int fd = 0; fd < MAX_FDS; fd++) {
        struct handle *h = handles[fd];
        if (!h)
            continue;
        for (uint32_t i = 0; i < h->n_bufs; i++)
            if (h->bufs[i].addr == addr)
                h->bufs[i].addr = NULL;
    }
    pthread_mutex_unlock(&lock);
    return real_munmap(addr, length);
}

/* Readiness of a fake fd as poll reports it, or -1 for a real fd. */
static int fake_revents(int fd, short events) {
    pthread_mutex_lock(&lock);
    struct handle *h = handle_of(fd);
    int out = -1;
    if (h) {
        read_control(h->dev);
        if (h->dev->unplugged || !h->streaming)
            out = POLLERR | POLLHUP;
        else
            out = ready(h) ? (events & (POLLIN | POLLRDNORM)) : 0;
    }
    pthread_mutex_unlock(&lock);
    return out;
}

int poll(struct pollfd *fds, nfds_t nfds, int timeout) {
    RESOLVE(poll);
    int any = 0;
    for (nfds_t i = 0; i < nfds; i++)
        any |= handle_of(fds[i].fd) != NULL;
    if (!any)
        return real_poll(fds, nfds, timeout);
    /* Real fds beside fake ones are polled without waiting, in 5 ms steps. */
    double deadline = now_s() + (timeout < 0 ? 1e9 : timeout / 1000.0);
    for (;;) {
        int n = 0;
        for (nfds_t i = 0; i < nfds; i++) {
            int r = fake_revents(fds[i].fd, fds[i].events);
            if (r < 0) {
                struct pollfd one = fds[i];
                r = real_poll(&one, 1, 0) > 0 ? one.revents : 0;
            }
            fds[i].revents = (short)r;
            n += r != 0;
        }
        if (n || now_s() >= deadline)
            return n;
        struct timespec step = {0, 5 * 1000 * 1000};
        nanosleep(&step, NULL);
    }
}

int select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv) {
    RESOLVE(select);
    int fake = -1;
    for (int fd = 0; fd < nfds && fd < MAX_FDS; fd++)
        if (handles[fd] && ((rd && FD_ISSET(fd, rd)) || (ex && FD_ISSET(fd, ex))))
            fake = fd;
    if (fake < 0)
        return real_select(nfds, rd, wr, ex, tv);
    /* Only a lone fake fd is answered; that is how capture loops use it. */
    struct pollfd p = {fake, POLLIN, 0};
    int timeout = tv ? (int)(tv->tv_sec * 1000 + tv->tv_usec / 1000) : -1;
    int n = poll(&p, 1, timeout);
    if (rd)
        FD_ZERO(rd);
    if (wr)
        FD_ZERO(wr);
    if (ex)
        FD_ZERO(ex);
    if (n > 0 && (p.revents & POLLIN) && rd)
        FD_SET(fake, rd);
    if (n > 0 && (p.revents & POLLERR) && ex)
        FD_SET(fake, ex);
    return n;
}

/* The listing of /dev gains the configured nodes that are plugged in. */
DIR *opendir(const char *path) {
    RESOLVE(opendir);
    DIR *d = real_opendir(path);
    if (d && (!strcmp(path, "/dev") || !strcmp(path, "/dev/"))) {
        pthread_mutex_lock(&lock);
        for (int i = 0; i < 16; i++)
            if (!dev_dirs[i]) {
                dev_dirs[i] = d;
                dev_dir_pos[i] = 0;
                break;
            }
        pthread_mutex_unlock(&lock);
    }
    return d;
}

int closedir(DIR *d) {
    RESOLVE(closedir);
    pthread_mutex_lock(&lock);
    for (int i = 0; i < 16; i++)
        if (dev_dirs[i] == d)
            dev_dirs[i] = NULL;
    pthread_mutex_unlock(&lock);
    return real_closedir(d);
}

/* The next fake entry's name for a /dev listing that reached its end. */
static const char *next_fake_name(DIR *dir) {
    load_config();
    const char *name = NULL;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < 16; i++) {
        if (dev_dirs[i] != dir)
            continue;
        while (dev_dir_pos[i] < n_devices && !name) {
            struct device *d = &devices[dev_dir_pos[i]++];
            read_control(d);
            if (!d->unplugged && !strncmp(d->path, "/dev/", 5))
                name = d->path + 5;
        }
    }
    pthread_mutex_unlock(&lock);
    return name;
}

/* The real entry, else the next fake one in a per-thread entry of `type`. */
#define READDIR(type, real)                                                    \
    do {                                                                       \
        struct type *e = real(dir);                                            \
        if (e)                                                                 \
            return e;                                                          \
        const char *name = next_fake_name(dir);                                \
        if (!name)                                                             \
            return NULL;                                                       \
        static __thread struct type fake;                                      \
        memset(&fake, 0, sizeof fake);                                         \
        fake.d_ino = 4242;                                                     \
        fake.d_type = DT_CHR;                                                  \
        fake.d_reclen = sizeof fake;                                           \
        snprintf(fake.d_name, sizeof fake.d_name, "%s", name);                 \
        return &fake;                                                          \
    } while (0)

struct dirent64 *readdir64(DIR *dir) {
    RESOLVE(readdir64);
    READDIR(dirent64, real_readdir64);
}

struct dirent *readdir(DIR *dir) {
    RESOLVE(readdir);
    READDIR(dirent, real_readdir);
}
