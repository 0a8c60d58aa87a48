"""The C support code every exported OpenCL entry shares (`RUNTIME_C`).

Written once per translation unit (an include guard keeps a second copy out), all
`static`, all names prefixed `pbcl_` / `PBCL_`, so two libraries never clash. It holds:

* a minimal set of OpenCL types and constants (no OpenCL headers are needed) and a
  table of the entry points used, loaded at run time with `dlopen`: the library named
  by `$PULLBACK_OPENCL_LIBRARY`, else `libOpenCL.so.1` (the ICD loader); so the
  exported library links without an OpenCL SDK and fails with an error string when no
  OpenCL is installed;
* device choice, as `pullback.compiler.backends.opencl.devices.select_device` does:
  `$PULLBACK_OPENCL_DEVICE` is "P", "P:D" (platform / device indices) or a
  case-insensitive piece of the platform or device name; unset, the first GPU, else
  the first device;
* SHA-256, and the checked binary cache: one entry per (program source, device,
  driver, platform version, build options), in the entry format of
  `pullback.compiler.backends.disk_cache` (magic, format version, key and payload
  checksums, length). A damaged entry, or one the driver refuses, is deleted and the
  program built from source again; a new entry is written to a temporary file,
  flushed, synced and renamed into place. While the driver loads an entry, a marker
  file names the loading process: an entry whose marker outlived its process (the
  driver crashed on it) is deleted by the next process.
"""

from pullback.compiler.backends import disk_cache

_TEMPLATE = r"""
#ifndef PULLBACK_OPENCL_RUNTIME
#define PULLBACK_OPENCL_RUNTIME
#if !defined(_POSIX_C_SOURCE) || _POSIX_C_SOURCE < 200809L
#undef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* effective only before the first system header */
#endif
#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* ---- The OpenCL types and constants used (OpenCL 1.2 API) ---- */
typedef int32_t pbcl_int;
typedef uint32_t pbcl_uint;
typedef uint64_t pbcl_ulong;
typedef uint64_t pbcl_bitfield;
typedef struct pbcl_opaque_platform *pbcl_platform;
typedef struct pbcl_opaque_device *pbcl_device;
typedef struct pbcl_opaque_context *pbcl_context;
typedef struct pbcl_opaque_queue *pbcl_queue;
typedef struct pbcl_opaque_program *pbcl_program;
typedef struct pbcl_opaque_kernel *pbcl_kernel;
typedef struct pbcl_opaque_mem *pbcl_mem;
typedef struct pbcl_opaque_event *pbcl_event;
typedef struct { size_t origin; size_t size; } pbcl_region;

#define PBCL_SUCCESS 0
#define PBCL_DEVICE_NOT_FOUND (-1)
#define PBCL_PLATFORM_VERSION 0x0901
#define PBCL_PLATFORM_NAME 0x0902
#define PBCL_DEVICE_TYPE 0x1000
#define PBCL_DEVICE_TYPE_GPU ((pbcl_bitfield)1 << 2)
#define PBCL_DEVICE_TYPE_ALL ((pbcl_bitfield)0xFFFFFFFF)
#define PBCL_DEVICE_MAX_WORK_ITEM_DIMENSIONS 0x1003
#define PBCL_DEVICE_MAX_WORK_GROUP_SIZE 0x1004
#define PBCL_DEVICE_MAX_WORK_ITEM_SIZES 0x1005
#define PBCL_DEVICE_MAX_MEM_ALLOC_SIZE 0x1010
#define PBCL_DEVICE_MEM_BASE_ADDR_ALIGN 0x1019
#define PBCL_DEVICE_NAME 0x102B
#define PBCL_DRIVER_VERSION 0x102D
#define PBCL_DEVICE_EXTENSIONS 0x1030
#define PBCL_DEVICE_DOUBLE_FP_CONFIG 0x1032
#define PBCL_MEM_READ_WRITE ((pbcl_bitfield)1)
#define PBCL_BUFFER_CREATE_TYPE_REGION 0x1220
#define PBCL_PROGRAM_BINARY_SIZES 0x1165
#define PBCL_PROGRAM_BINARIES 0x1166
#define PBCL_PROGRAM_BUILD_LOG 0x1183

#if defined(__GNUC__) || defined(__clang__)
#define PBCL_MAYBE_UNUSED __attribute__((unused))
#else
#define PBCL_MAYBE_UNUSED
#endif

/* One kernel argument: a buffer index (inputs, outputs, temporaries) or, with
   buffer < 0, a scalar of `size` bytes (host byte order). */
typedef struct { int buffer; unsigned size; unsigned char bytes[8]; } pbcl_arg;

/* Error codes of the entry functions (0 is success). */
#define PBCL_E_UNAVAILABLE 1 /* no OpenCL library, platform or matching device */
#define PBCL_E_DEVICE 2      /* the device cannot run this entry */
#define PBCL_E_BUILD 3       /* the OpenCL compiler rejected the program */
#define PBCL_E_RUNTIME 4     /* an OpenCL call failed */
#define PBCL_E_USAGE 5       /* not initialised, or a null array pointer */

typedef struct pbcl_api {
    void *handle;
    pbcl_int (*GetPlatformIDs)(pbcl_uint, pbcl_platform *, pbcl_uint *);
    pbcl_int (*GetPlatformInfo)(pbcl_platform, pbcl_uint, size_t, void *, size_t *);
    pbcl_int (*GetDeviceIDs)(pbcl_platform, pbcl_bitfield, pbcl_uint, pbcl_device *,
                             pbcl_uint *);
    pbcl_int (*GetDeviceInfo)(pbcl_device, pbcl_uint, size_t, void *, size_t *);
    pbcl_context (*CreateContext)(const intptr_t *, pbcl_uint, const pbcl_device *,
                                  void (*)(const char *, const void *, size_t, void *),
                                  void *, pbcl_int *);
    pbcl_int (*ReleaseContext)(pbcl_context);
    pbcl_queue (*CreateCommandQueue)(pbcl_context, pbcl_device, pbcl_bitfield, pbcl_int *);
    pbcl_int (*ReleaseCommandQueue)(pbcl_queue);
    pbcl_program (*CreateProgramWithSource)(pbcl_context, pbcl_uint, const char **,
                                            const size_t *, pbcl_int *);
    pbcl_program (*CreateProgramWithBinary)(pbcl_context, pbcl_uint, const pbcl_device *,
                                            const size_t *, const unsigned char **,
                                            pbcl_int *, pbcl_int *);
    pbcl_int (*BuildProgram)(pbcl_program, pbcl_uint, const pbcl_device *, const char *,
                             void (*)(pbcl_program, void *), void *);
    pbcl_int (*GetProgramInfo)(pbcl_program, pbcl_uint, size_t, void *, size_t *);
    pbcl_int (*GetProgramBuildInfo)(pbcl_program, pbcl_device, pbcl_uint, size_t, void *,
                                    size_t *);
    pbcl_int (*ReleaseProgram)(pbcl_program);
    pbcl_kernel (*CreateKernel)(pbcl_program, const char *, pbcl_int *);
    pbcl_int (*SetKernelArg)(pbcl_kernel, pbcl_uint, size_t, const void *);
    pbcl_int (*ReleaseKernel)(pbcl_kernel);
    pbcl_mem (*CreateBuffer)(pbcl_context, pbcl_bitfield, size_t, void *, pbcl_int *);
    pbcl_mem (*CreateSubBuffer)(pbcl_mem, pbcl_bitfield, pbcl_uint, const void *,
                                pbcl_int *);
    pbcl_int (*ReleaseMemObject)(pbcl_mem);
    pbcl_int (*EnqueueWriteBuffer)(pbcl_queue, pbcl_mem, pbcl_uint, size_t, size_t,
                                   const void *, pbcl_uint, const pbcl_event *, pbcl_event *);
    pbcl_int (*EnqueueReadBuffer)(pbcl_queue, pbcl_mem, pbcl_uint, size_t, size_t, void *,
                                  pbcl_uint, const pbcl_event *, pbcl_event *);
    pbcl_int (*EnqueueNDRangeKernel)(pbcl_queue, pbcl_kernel, pbcl_uint, const size_t *,
                                     const size_t *, const size_t *, pbcl_uint,
                                     const pbcl_event *, pbcl_event *);
    pbcl_int (*Finish)(pbcl_queue);
} pbcl_api;

static int pbcl_fail(char *err, size_t err_len, int code, const char *fmt, ...) {
    if (err != NULL && err_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Format a path into out; -1 (and nothing to use) when it does not fit. */
static int pbcl_path(char *out, size_t n, const char *fmt, ...) {
    va_list ap;
    int w;
    va_start(ap, fmt);
    w = vsnprintf(out, n, fmt, ap);
    va_end(ap);
    return w >= 0 && (size_t)w < n ? 0 : -1;
}

static const char *pbcl_error_name(pbcl_int code) {
    switch (code) {
    case -1: return "CL_DEVICE_NOT_FOUND";
    case -2: return "CL_DEVICE_NOT_AVAILABLE";
    case -3: return "CL_COMPILER_NOT_AVAILABLE";
    case -4: return "CL_MEM_OBJECT_ALLOCATION_FAILURE";
    case -5: return "CL_OUT_OF_RESOURCES";
    case -6: return "CL_OUT_OF_HOST_MEMORY";
    case -11: return "CL_BUILD_PROGRAM_FAILURE";
    case -13: return "CL_MISALIGNED_SUB_BUFFER_OFFSET";
    case -30: return "CL_INVALID_VALUE";
    case -33: return "CL_INVALID_DEVICE";
    case -36: return "CL_INVALID_COMMAND_QUEUE";
    case -38: return "CL_INVALID_MEM_OBJECT";
    case -42: return "CL_INVALID_BINARY";
    case -45: return "CL_INVALID_PROGRAM_EXECUTABLE";
    case -46: return "CL_INVALID_KERNEL_NAME";
    case -48: return "CL_INVALID_KERNEL";
    case -51: return "CL_INVALID_ARG_SIZE";
    case -52: return "CL_INVALID_KERNEL_ARGS";
    case -54: return "CL_INVALID_WORK_GROUP_SIZE";
    case -55: return "CL_INVALID_WORK_ITEM_SIZE";
    case -61: return "CL_INVALID_BUFFER_SIZE";
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
    default: return "an OpenCL error";
    }
}

#define PBCL_LOAD(api, name)                                                  \
    do {                                                                      \
        void *pbcl_sym = dlsym((api)->handle, "cl" #name);                    \
        if (pbcl_sym == NULL) {                                               \
            dlclose((api)->handle);                                           \
            (api)->handle = NULL;                                             \
            return pbcl_fail(err, err_len, PBCL_E_UNAVAILABLE,                \
                             "the OpenCL library %s has no entry point cl" #name, \
                             path);                                           \
        }                                                                     \
        memcpy(&(api)->name, &pbcl_sym, sizeof pbcl_sym);                     \
    } while (0)

/* Load the OpenCL entry points; 0, or an error code with a message in err. */
static int pbcl_load(pbcl_api *api, char *err, size_t err_len) {
    const char *path = getenv("PULLBACK_OPENCL_LIBRARY");
    if (path == NULL || path[0] == '\0') path = "libOpenCL.so.1";
    api->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (api->handle == NULL) {
        const char *why = dlerror();
        return pbcl_fail(err, err_len, PBCL_E_UNAVAILABLE,
                         "cannot load the OpenCL library '%s' (%s): install an OpenCL ICD "
                         "loader and a driver (e.g. the ocl-icd-libopencl1 and pocl-opencl-icd "
                         "packages, or a GPU vendor's driver), or set PULLBACK_OPENCL_LIBRARY "
                         "to the path of a libOpenCL", path, why ? why : "not found");
    }
    PBCL_LOAD(api, GetPlatformIDs);
    PBCL_LOAD(api, GetPlatformInfo);
    PBCL_LOAD(api, GetDeviceIDs);
    PBCL_LOAD(api, GetDeviceInfo);
    PBCL_LOAD(api, CreateContext);
    PBCL_LOAD(api, ReleaseContext);
    PBCL_LOAD(api, CreateCommandQueue);
    PBCL_LOAD(api, ReleaseCommandQueue);
    PBCL_LOAD(api, CreateProgramWithSource);
    PBCL_LOAD(api, CreateProgramWithBinary);
    PBCL_LOAD(api, BuildProgram);
    PBCL_LOAD(api, GetProgramInfo);
    PBCL_LOAD(api, GetProgramBuildInfo);
    PBCL_LOAD(api, ReleaseProgram);
    PBCL_LOAD(api, CreateKernel);
    PBCL_LOAD(api, SetKernelArg);
    PBCL_LOAD(api, ReleaseKernel);
    PBCL_LOAD(api, CreateBuffer);
    PBCL_LOAD(api, CreateSubBuffer);
    PBCL_LOAD(api, ReleaseMemObject);
    PBCL_LOAD(api, EnqueueWriteBuffer);
    PBCL_LOAD(api, EnqueueReadBuffer);
    PBCL_LOAD(api, EnqueueNDRangeKernel);
    PBCL_LOAD(api, Finish);
    return 0;
}

/* Keep PoCL's own kernel cache off, as the Python backend does (its entries are reused
   unchecked); only where the user has not set it, before the first platform query. */
static void pbcl_isolate_pocl(void) {
    if (getenv("POCL_KERNEL_CACHE") == NULL) setenv("POCL_KERNEL_CACHE", "0", 0);
}

static void pbcl_unload(pbcl_api *api) {
    if (api->handle != NULL) dlclose(api->handle);
    memset(api, 0, sizeof *api);
}

/* ---- Device choice ---- */

/* A text property of a platform or device, always terminated (empty on failure). */
static void pbcl_platform_text(const pbcl_api *api, pbcl_platform p, pbcl_uint what,
                               char *out, size_t n) {
    out[0] = '\0';
    if (api->GetPlatformInfo(p, what, n - 1, out, NULL) != PBCL_SUCCESS) out[0] = '\0';
    out[n - 1] = '\0';
}

static void pbcl_device_text(const pbcl_api *api, pbcl_device d, pbcl_uint what, char *out,
                             size_t n) {
    out[0] = '\0';
    if (api->GetDeviceInfo(d, what, n - 1, out, NULL) != PBCL_SUCCESS) out[0] = '\0';
    out[n - 1] = '\0';
}

static int pbcl_contains_nocase(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (; *hay != '\0'; ++hay) {
        size_t i = 0;
        while (i < n && hay[i] != '\0' &&
               tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i])) ++i;
        if (i == n) return 1;
    }
    return n == 0;
}

#define PBCL_MAX_PLATFORMS 16
#define PBCL_MAX_DEVICES 64

/* The device $PULLBACK_OPENCL_DEVICE names (see the module docs), or an error. */
static int pbcl_select_device(const pbcl_api *api, pbcl_platform *platform_out,
                              pbcl_device *device_out, char *err, size_t err_len) {
    pbcl_platform platforms[PBCL_MAX_PLATFORMS];
    pbcl_platform owner[PBCL_MAX_DEVICES];
    pbcl_device devices[PBCL_MAX_DEVICES];
    unsigned pindex[PBCL_MAX_DEVICES], dindex[PBCL_MAX_DEVICES];
    pbcl_uint np = 0, total = 0, p;
    pbcl_int rc = api->GetPlatformIDs(PBCL_MAX_PLATFORMS, platforms, &np);
    const char *spec = getenv("PULLBACK_OPENCL_DEVICE");
    char listing[2048] = "", name[256], pname[256];
    size_t used = 0, i;
    if (rc != PBCL_SUCCESS || np == 0)
        return pbcl_fail(err, err_len, PBCL_E_UNAVAILABLE,
                         "no OpenCL platform found (%s %d): install an OpenCL driver "
                         "(e.g. pocl-opencl-icd for a CPU device, or a GPU vendor's driver)",
                         pbcl_error_name(rc), (int)rc);
    if (np > PBCL_MAX_PLATFORMS) np = PBCL_MAX_PLATFORMS;
    for (p = 0; p < np && total < PBCL_MAX_DEVICES; ++p) {
        pbcl_device found[PBCL_MAX_DEVICES];
        pbcl_uint nd = 0, d;
        if (api->GetDeviceIDs(platforms[p], PBCL_DEVICE_TYPE_ALL, PBCL_MAX_DEVICES, found,
                              &nd) != PBCL_SUCCESS) continue;
        if (nd > PBCL_MAX_DEVICES) nd = PBCL_MAX_DEVICES;
        for (d = 0; d < nd && total < PBCL_MAX_DEVICES; ++d, ++total) {
            owner[total] = platforms[p];
            devices[total] = found[d];
            pindex[total] = p;
            dindex[total] = d;
        }
    }
    if (total == 0)
        return pbcl_fail(err, err_len, PBCL_E_UNAVAILABLE,
                         "no OpenCL device found: install an OpenCL driver (e.g. "
                         "pocl-opencl-icd for a CPU device, or a GPU vendor's driver)");
    if (spec != NULL && strncmp(spec, "opencl:", 7) == 0) spec += 7;
    while (spec != NULL && isspace((unsigned char)*spec)) ++spec;
    if (spec == NULL || *spec == '\0') {
        for (i = 0; i < total; ++i) {
            pbcl_bitfield type = 0;
            if (api->GetDeviceInfo(devices[i], PBCL_DEVICE_TYPE, sizeof type, &type, NULL)
                    == PBCL_SUCCESS && (type & PBCL_DEVICE_TYPE_GPU)) break;
        }
        if (i == total) i = 0;
        *platform_out = owner[i];
        *device_out = devices[i];
        return 0;
    }
    {
        char want[256];
        char *end = NULL, *end2 = NULL;
        size_t len;
        unsigned long want_p = 0, want_d = 0;
        int numeric;
        snprintf(want, sizeof want, "%s", spec);
        len = strlen(want);
        while (len > 0 && isspace((unsigned char)want[len - 1])) want[--len] = '\0';
        numeric = isdigit((unsigned char)want[0]) != 0;
        if (numeric) {
            want_p = strtoul(want, &end, 10);
            if (*end == ':' && isdigit((unsigned char)end[1])) {
                want_d = strtoul(end + 1, &end2, 10);
                numeric = *end2 == '\0';
            } else {
                numeric = *end == '\0';
            }
        }
        spec = want;
        for (i = 0; i < total; ++i) {
            pbcl_device_text(api, devices[i], PBCL_DEVICE_NAME, name, sizeof name);
            pbcl_platform_text(api, owner[i], PBCL_PLATFORM_NAME, pname, sizeof pname);
            if (numeric ? (pindex[i] == want_p && dindex[i] == want_d)
                        : (pbcl_contains_nocase(name, spec) ||
                           pbcl_contains_nocase(pname, spec))) {
                *platform_out = owner[i];
                *device_out = devices[i];
                return 0;
            }
            if (used < sizeof listing - 1)
                used += (size_t)snprintf(listing + used, sizeof listing - used, "%s%u:%u %s / %s",
                                         i ? "; " : "", pindex[i], dindex[i], pname, name);
            if (used > sizeof listing - 1) used = sizeof listing - 1;
        }
        return pbcl_fail(err, err_len, PBCL_E_UNAVAILABLE,
                         "no OpenCL device matches PULLBACK_OPENCL_DEVICE='%s' (accepted: "
                         "'P' or 'P:D' platform/device indices, or a piece of a platform or "
                         "device name; devices: %s)", want, listing);
    }
}

/* ---- SHA-256 ---- */

typedef struct { uint32_t h[8]; uint64_t bytes; unsigned char block[64]; size_t fill; }
    pbcl_sha256;

static const uint32_t pbcl_sha256_k[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u,
    0x923f82a4u, 0xab1c5ed5u, 0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u,
    0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u, 0xe49b69c1u, 0xefbe4786u,
    0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u,
    0x06ca6351u, 0x14292967u, 0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u,
    0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u, 0xa2bfe8a1u, 0xa81a664bu,
    0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au,
    0x5b9cca4fu, 0x682e6ff3u, 0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u,
    0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u};

#define PBCL_ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void pbcl_sha256_block(pbcl_sha256 *s, const unsigned char *b) {
    uint32_t w[64], v[8], t1, t2;
    int i;
    for (i = 0; i < 16; ++i)
        w[i] = (uint32_t)b[4 * i] << 24 | (uint32_t)b[4 * i + 1] << 16 |
               (uint32_t)b[4 * i + 2] << 8 | (uint32_t)b[4 * i + 3];
    for (i = 16; i < 64; ++i)
        w[i] = w[i - 16] + (PBCL_ROTR(w[i - 15], 7) ^ PBCL_ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3)) +
               w[i - 7] + (PBCL_ROTR(w[i - 2], 17) ^ PBCL_ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10));
    memcpy(v, s->h, sizeof v);
    for (i = 0; i < 64; ++i) {
        t1 = v[7] + (PBCL_ROTR(v[4], 6) ^ PBCL_ROTR(v[4], 11) ^ PBCL_ROTR(v[4], 25)) +
             ((v[4] & v[5]) ^ (~v[4] & v[6])) + pbcl_sha256_k[i] + w[i];
        t2 = (PBCL_ROTR(v[0], 2) ^ PBCL_ROTR(v[0], 13) ^ PBCL_ROTR(v[0], 22)) +
             ((v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]));
        memmove(v + 1, v, 7 * sizeof v[0]);
        v[4] += t1;
        v[0] = t1 + t2;
    }
    for (i = 0; i < 8; ++i) s->h[i] += v[i];
}

static void pbcl_sha256_init(pbcl_sha256 *s) {
    static const uint32_t h0[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                                   0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
    memcpy(s->h, h0, sizeof h0);
    s->bytes = 0;
    s->fill = 0;
}

static void pbcl_sha256_update(pbcl_sha256 *s, const void *data, size_t n) {
    const unsigned char *p = (const unsigned char *)data;
    s->bytes += n;
    while (n > 0) {
        size_t take = 64 - s->fill < n ? 64 - s->fill : n;
        memcpy(s->block + s->fill, p, take);
        s->fill += take;
        p += take;
        n -= take;
        if (s->fill == 64) {
            pbcl_sha256_block(s, s->block);
            s->fill = 0;
        }
    }
}

static void pbcl_sha256_final(pbcl_sha256 *s, unsigned char out[32]) {
    uint64_t bits = s->bytes * 8;
    unsigned char pad = 0x80, len[8];
    int i;
    pbcl_sha256_update(s, &pad, 1);
    pad = 0;
    while (s->fill != 56) pbcl_sha256_update(s, &pad, 1);
    for (i = 0; i < 8; ++i) len[i] = (unsigned char)(bits >> (56 - 8 * i));
    pbcl_sha256_update(s, len, 8);
    for (i = 0; i < 32; ++i) out[i] = (unsigned char)(s->h[i / 4] >> (24 - 8 * (i % 4)));
}

static void pbcl_sha256_of(const void *data, size_t n, unsigned char out[32]) {
    pbcl_sha256 s;
    pbcl_sha256_init(&s);
    pbcl_sha256_update(&s, data, n);
    pbcl_sha256_final(&s, out);
}

/* ---- The checked binary cache ---- */

#define PBCL_MAGIC "@MAGIC@" /* the layout of disk_cache's entries */
#define PBCL_FORMAT_VERSION @FORMAT_VERSION@u
#define PBCL_HEADER_BYTES (8 + 4 + 32 + 32 + 8)
#define PBCL_STALE_SECONDS 3600

/* The payload of a whole, current entry at path for key_hash (malloc'd), else NULL;
   a file that is there but damaged is deleted. */
static unsigned char *pbcl_cache_read(const char *path, const unsigned char key_hash[32],
                                      size_t *length) {
    FILE *f = fopen(path, "rb");
    unsigned char *data = NULL, digest[32];
    long size;
    uint64_t stored = 0;
    uint32_t version = 0;
    int i, ok = 0;
    if (f == NULL) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (size_t)size >= PBCL_HEADER_BYTES) {
        data = (unsigned char *)malloc((size_t)size);
        if (data != NULL && fread(data, 1, (size_t)size, f) == (size_t)size) {
            for (i = 0; i < 4; ++i) version |= (uint32_t)data[8 + i] << (8 * i);
            for (i = 0; i < 8; ++i) stored |= (uint64_t)data[76 + i] << (8 * i);
            *length = (size_t)size - PBCL_HEADER_BYTES;
            pbcl_sha256_of(data + PBCL_HEADER_BYTES, *length, digest);
            ok = memcmp(data, PBCL_MAGIC, 8) == 0 && version == PBCL_FORMAT_VERSION &&
                 memcmp(data + 12, key_hash, 32) == 0 && stored == (uint64_t)*length &&
                 memcmp(data + 44, digest, 32) == 0;
        }
    }
    fclose(f);
    if (!ok) {
        free(data);
        remove(path);
        return NULL;
    }
    memmove(data, data + PBCL_HEADER_BYTES, *length);
    return data;
}

static int pbcl_write_all(int fd, const void *data, size_t n) {
    const char *p = (const char *)data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The folder part of path (up to its last '/'), "." when it has none. */
static void pbcl_folder_of(const char *path, char *out, size_t n) {
    const char *slash = strrchr(path, '/');
    size_t len = slash == NULL ? 0 : (size_t)(slash - path);
    if (slash == NULL) {
        snprintf(out, n, ".");
        return;
    }
    if (len == 0) len = 1;
    if (len >= n) len = n - 1;
    memcpy(out, path, len);
    out[len] = '\0';
}

/* Delete temporaries of unfinished writes of `base` (older than PBCL_STALE_SECONDS). */
static void pbcl_sweep_temporaries(const char *folder, const char *base) {
    DIR *dir = opendir(folder);
    struct dirent *e;
    char prefix[512], full[4096];
    struct stat st;
    time_t cutoff = time(NULL) - PBCL_STALE_SECONDS;
    if (dir == NULL) return;
    if (pbcl_path(prefix, sizeof prefix, ".%s.", base) != 0) {
        closedir(dir);
        return;
    }
    while ((e = readdir(dir)) != NULL) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0) continue;
        if (pbcl_path(full, sizeof full, "%s/%s", folder, e->d_name) == 0 &&
            stat(full, &st) == 0 && st.st_mtime < cutoff) remove(full);
    }
    closedir(dir);
}

/* Store payload for key_hash at path, atomically and durably; failures only mean the
   entry is not kept (the cache is an optimisation). */
static void pbcl_cache_write(const char *path, const unsigned char key_hash[32],
                             const unsigned char *payload, size_t n) {
    char folder[4096], tmp[4200];
    const char *base = strrchr(path, '/');
    unsigned char header[PBCL_HEADER_BYTES];
    uint32_t version = PBCL_FORMAT_VERSION;
    uint64_t length = (uint64_t)n;
    int fd, i, ok;
    base = base == NULL ? path : base + 1;
    pbcl_folder_of(path, folder, sizeof folder);
    mkdir(folder, 0777);
    pbcl_sweep_temporaries(folder, base);
    memcpy(header, PBCL_MAGIC, 8);
    for (i = 0; i < 4; ++i) header[8 + i] = (unsigned char)(version >> (8 * i));
    memcpy(header + 12, key_hash, 32);
    pbcl_sha256_of(payload, n, header + 44);
    for (i = 0; i < 8; ++i) header[76 + i] = (unsigned char)(length >> (8 * i));
    if (pbcl_path(tmp, sizeof tmp, "%s/.%s.XXXXXX", folder, base) != 0) return;
    fd = mkstemp(tmp);
    if (fd < 0) return;
    ok = pbcl_write_all(fd, header, sizeof header) == 0 && pbcl_write_all(fd, payload, n) == 0 &&
         fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return;
    }
    fd = open(folder, O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Whether a process died while its driver loaded the entry at path (a marker
   "<file>.loading.<pid>.<n>" outlived its process); such markers are deleted. */
static int pbcl_crashed_a_loader(const char *path) {
    char folder[4096], prefix[512], full[4096];
    const char *base = strrchr(path, '/');
    DIR *dir;
    struct dirent *e;
    int crashed = 0;
    base = base == NULL ? path : base + 1;
    pbcl_folder_of(path, folder, sizeof folder);
    if (pbcl_path(prefix, sizeof prefix, "%s.loading.", base) != 0) return 0;
    dir = opendir(folder);
    if (dir == NULL) return 0;
    while ((e = readdir(dir)) != NULL) {
        long pid;
        char *end;
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0) continue;
        pid = strtol(e->d_name + strlen(prefix), &end, 10);
        if (end == e->d_name + strlen(prefix) || pid <= 0) continue;
        if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
            if (pbcl_path(full, sizeof full, "%s/%s", folder, e->d_name) == 0) remove(full);
            crashed = 1;
        }
    }
    closedir(dir);
    return crashed;
}

/* ---- What an entry needs of its device ---- */

/* 0 if device can run an entry whose kernels use work-groups of up to `group` items
   (at most local[d] in dimension d), float64 when needs_fp64, and whose temporaries
   sit at offsets that are multiples of `align` bytes in one buffer (0: any). */
static int pbcl_check_device(const pbcl_api *api, pbcl_device device, const char *name,
                             int needs_fp64, size_t group, const size_t local[3],
                             size_t align, char *err, size_t err_len) {
    char text[256], extensions[8192];
    size_t max_group = 0, sizes[16] = {0};
    pbcl_uint dims = 0, base_bits = 0, d;
    pbcl_ulong fp64 = 0;
    pbcl_device_text(api, device, PBCL_DEVICE_NAME, text, sizeof text);
    if (needs_fp64) {
        pbcl_device_text(api, device, PBCL_DEVICE_EXTENSIONS, extensions, sizeof extensions);
        if (api->GetDeviceInfo(device, PBCL_DEVICE_DOUBLE_FP_CONFIG, sizeof fp64, &fp64, NULL)
                != PBCL_SUCCESS) fp64 = 0;
        if (fp64 == 0 && strstr(extensions, "cl_khr_fp64") == NULL)
            return pbcl_fail(err, err_len, PBCL_E_DEVICE,
                             "%s computes in float64, which the OpenCL device '%s' does not "
                             "support (no cl_khr_fp64): choose another device with "
                             "PULLBACK_OPENCL_DEVICE, or export a float32 version", name, text);
    }
    if (api->GetDeviceInfo(device, PBCL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof max_group,
                           &max_group, NULL) == PBCL_SUCCESS && max_group < group)
        return pbcl_fail(err, err_len, PBCL_E_DEVICE,
                         "%s runs work-groups of %lu items, but the OpenCL device '%s' allows "
                         "at most %lu: export it from a process that compiled it for this "
                         "device", name, (unsigned long)group, text, (unsigned long)max_group);
    if (api->GetDeviceInfo(device, PBCL_DEVICE_MAX_WORK_ITEM_DIMENSIONS, sizeof dims, &dims,
                           NULL) == PBCL_SUCCESS && dims >= 3 && dims <= 16 &&
        api->GetDeviceInfo(device, PBCL_DEVICE_MAX_WORK_ITEM_SIZES, dims * sizeof(size_t),
                           sizes, NULL) == PBCL_SUCCESS)
        for (d = 0; d < 3; ++d)
            if (sizes[d] < local[d])
                return pbcl_fail(err, err_len, PBCL_E_DEVICE,
                                 "%s runs work-groups of %lu items in dimension %u, but the "
                                 "OpenCL device '%s' allows at most %lu there: export it "
                                 "from a process that compiled it for this device", name,
                                 (unsigned long)local[d], (unsigned)d, text,
                                 (unsigned long)sizes[d]);
    if (align != 0 &&
        api->GetDeviceInfo(device, PBCL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof base_bits,
                           &base_bits, NULL) == PBCL_SUCCESS && base_bits / 8 > align)
        return pbcl_fail(err, err_len, PBCL_E_DEVICE,
                         "the OpenCL device '%s' needs buffers aligned to %u bytes, but the "
                         "memory plan of %s aligns its temporaries to %lu bytes (it was "
                         "compiled for another device): export it from a process that "
                         "compiled it for this device", text, base_bits / 8, name,
                         (unsigned long)align);
    return 0;
}

/* ---- Programs: from the checked cache, else from source (then cached) ---- */

static int pbcl_build_failed(const pbcl_api *api, pbcl_program program, pbcl_device device,
                             pbcl_int rc, const char *what, char *err, size_t err_len) {
    char log[4096] = "";
    size_t n = 0;
    if (program != NULL &&
        api->GetProgramBuildInfo(program, device, PBCL_PROGRAM_BUILD_LOG, sizeof log - 1, log,
                                 &n) != PBCL_SUCCESS) log[0] = '\0';
    log[sizeof log - 1] = '\0';
    return pbcl_fail(err, err_len, PBCL_E_BUILD,
                     "the OpenCL compiler rejected the program of %s (%s %d):\n%s", what,
                     pbcl_error_name(rc), (int)rc, log);
}

static pbcl_program pbcl_from_binary(const pbcl_api *api, pbcl_context context,
                                     pbcl_device device, const char *path,
                                     const unsigned char *binary, size_t n,
                                     const char *options, const void *who) {
    char marker[4200];
    pbcl_int rc = PBCL_SUCCESS, status = PBCL_SUCCESS;
    pbcl_program program;
    FILE *f;
    if (pbcl_path(marker, sizeof marker, "%s.loading.%ld.%lu", path, (long)getpid(),
                  (unsigned long)(uintptr_t)who) != 0) return NULL;
    f = fopen(marker, "wb");
    if (f != NULL) fclose(f);
    program = api->CreateProgramWithBinary(context, 1, &device, &n, &binary, &status, &rc);
    if (program != NULL && (rc != PBCL_SUCCESS || status != PBCL_SUCCESS ||
                            api->BuildProgram(program, 1, &device, options, NULL, NULL)
                                != PBCL_SUCCESS)) {
        api->ReleaseProgram(program);
        program = NULL;
    }
    remove(marker);
    return program;
}

static void pbcl_store_binary(const pbcl_api *api, pbcl_program program, const char *path,
                              const unsigned char key_hash[32]) {
    size_t n = 0;
    unsigned char *binary;
    if (api->GetProgramInfo(program, PBCL_PROGRAM_BINARY_SIZES, sizeof n, &n, NULL)
            != PBCL_SUCCESS || n == 0) return;
    binary = (unsigned char *)malloc(n);
    if (binary == NULL) return;
    if (api->GetProgramInfo(program, PBCL_PROGRAM_BINARIES, sizeof binary, &binary, NULL)
            == PBCL_SUCCESS)
        pbcl_cache_write(path, key_hash, binary, n);
    free(binary);
}

/* A built program for source on device; *from_disk says whether the cache gave it.
   cache_dir NULL or empty: no disk cache. */
static int pbcl_build(const pbcl_api *api, pbcl_context context, pbcl_platform platform,
                      pbcl_device device, const char *name, const char *source,
                      const char *options, const char *cache_dir, const void *who,
                      pbcl_program *out, int *from_disk, char *err, size_t err_len) {
    char path[4096] = "", text[512];
    unsigned char key_hash[32];
    pbcl_program program = NULL;
    pbcl_int rc = PBCL_SUCCESS;
    size_t length = strlen(source);
    *from_disk = 0;
    if (cache_dir != NULL && cache_dir[0] != '\0') {
        static const char format[] = "pullback-opencl-export-binary-1";
        pbcl_sha256 key;
        char hex[17];
        int i;
        pbcl_sha256_init(&key);
        pbcl_sha256_update(&key, format, sizeof format);
        pbcl_sha256_update(&key, source, length + 1);
        pbcl_device_text(api, device, PBCL_DEVICE_NAME, text, sizeof text);
        pbcl_sha256_update(&key, text, strlen(text) + 1);
        pbcl_device_text(api, device, PBCL_DRIVER_VERSION, text, sizeof text);
        pbcl_sha256_update(&key, text, strlen(text) + 1);
        pbcl_platform_text(api, platform, PBCL_PLATFORM_VERSION, text, sizeof text);
        pbcl_sha256_update(&key, text, strlen(text) + 1);
        pbcl_sha256_update(&key, options, strlen(options) + 1);
        pbcl_sha256_final(&key, key_hash);
        for (i = 0; i < 8; ++i) snprintf(hex + 2 * i, 3, "%02x", key_hash[i]);
        if (pbcl_path(path, sizeof path, "%s/%s-%s.clbin", cache_dir, name, hex) != 0) {
            path[0] = '\0'; /* too long a folder name: no disk cache */
        } else if (pbcl_crashed_a_loader(path)) {
            remove(path);
        } else {
            size_t n = 0;
            unsigned char *binary = pbcl_cache_read(path, key_hash, &n);
            if (binary != NULL) {
                program = pbcl_from_binary(api, context, device, path, binary, n, options, who);
                free(binary);
                if (program == NULL) remove(path); /* intact but refused: rebuild */
            }
        }
    }
    if (program != NULL) {
        *from_disk = 1;
        *out = program;
        return 0;
    }
    program = api->CreateProgramWithSource(context, 1, &source, &length, &rc);
    if (program == NULL || rc != PBCL_SUCCESS)
        return pbcl_build_failed(api, NULL, device, rc, name, err, err_len);
    rc = api->BuildProgram(program, 1, &device, options, NULL, NULL);
    if (rc != PBCL_SUCCESS) {
        int code = pbcl_build_failed(api, program, device, rc, name, err, err_len);
        api->ReleaseProgram(program);
        return code;
    }
    if (path[0] != '\0') pbcl_store_binary(api, program, path, key_hash);
    *out = program;
    return 0;
}
#endif /* PULLBACK_OPENCL_RUNTIME */
"""

RUNTIME_C = (_TEMPLATE.replace("@MAGIC@", disk_cache.MAGIC.decode().replace("\n", "\\n"))
             .replace("@FORMAT_VERSION@", str(disk_cache.FORMAT_VERSION)))
"""The shared C text (see the module docstring); its entries follow `disk_cache`'s
magic and format version."""
