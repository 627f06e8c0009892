/* _eryx_scrypt: hashlib.scrypt for the guest, which has no OpenSSL (issue 18 item 8).
 *
 * scrypt (RFC 7914) over its own SHA-256, HMAC and PBKDF2, with CPython's signature and errors
 * (Modules/_hashopenssl.c, _hashlib.scrypt) and OpenSSL's parameter checks (EVP_PBE_scrypt:
 * N < 2^(16 r), p r < 2^30, at most maxmem bytes, 32 MiB by default). The driver installs it as
 * hashlib.scrypt. Everything runs in the guest: its buffers are guest memory (under the memory
 * cap: MemoryError), and its loops are instrumented like all guest code, so the execution
 * timeout, the hard stop and fuel apply to it. */

#include "Python.h"

#include <stdint.h>
#include <string.h>

/* ---- SHA-256 (FIPS 180-4) ----------------------------------------------------------------- */

typedef struct {
    uint32_t h[8];
    uint64_t len;       /* bytes hashed */
    uint8_t buf[64];
    size_t used;
} sha256_ctx;

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
#define ROTL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))

static uint32_t
be32dec(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void
be32enc(uint8_t *p, uint32_t x)
{
    p[0] = (uint8_t)(x >> 24); p[1] = (uint8_t)(x >> 16); p[2] = (uint8_t)(x >> 8); p[3] = (uint8_t)x;
}

static uint32_t
le32dec(const uint8_t *p)
{
    return ((uint32_t)p[3] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[1] << 8) | p[0];
}

static void
le32enc(uint8_t *p, uint32_t x)
{
    p[0] = (uint8_t)x; p[1] = (uint8_t)(x >> 8); p[2] = (uint8_t)(x >> 16); p[3] = (uint8_t)(x >> 24);
}

static void
sha256_block(sha256_ctx *c, const uint8_t *block)
{
    uint32_t w[64], a, b, d, e, f, g, h, cc, t1, t2;
    for (int i = 0; i < 16; i++) {
        w[i] = be32dec(block + 4 * i);
    }
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROTR(w[i - 15], 7) ^ ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROTR(w[i - 2], 17) ^ ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = c->h[0]; b = c->h[1]; cc = c->h[2]; d = c->h[3];
    e = c->h[4]; f = c->h[5]; g = c->h[6]; h = c->h[7];
    for (int i = 0; i < 64; i++) {
        t1 = h + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + ((a & b) ^ (a & cc) ^ (b & cc));
        h = g; g = f; f = e; e = d + t1; d = cc; cc = b; b = a; a = t1 + t2;
    }
    c->h[0] += a; c->h[1] += b; c->h[2] += cc; c->h[3] += d;
    c->h[4] += e; c->h[5] += f; c->h[6] += g; c->h[7] += h;
}

static void
sha256_init(sha256_ctx *c)
{
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, iv, sizeof(iv));
    c->len = 0;
    c->used = 0;
}

static void
sha256_update(sha256_ctx *c, const uint8_t *p, size_t n)
{
    c->len += n;
    if (c->used > 0) {
        size_t take = 64 - c->used < n ? 64 - c->used : n;
        memcpy(c->buf + c->used, p, take);
        c->used += take;
        p += take;
        n -= take;
        if (c->used < 64) {
            return;
        }
        sha256_block(c, c->buf);
        c->used = 0;
    }
    for (; n >= 64; p += 64, n -= 64) {
        sha256_block(c, p);
    }
    memcpy(c->buf, p, n);
    c->used = n;
}

static void
sha256_final(sha256_ctx *c, uint8_t out[32])
{
    uint64_t bits = c->len * 8;
    uint8_t pad[72] = {0x80};
    size_t padlen = (c->used < 56 ? 56 : 120) - c->used;
    for (int i = 0; i < 8; i++) {
        pad[padlen + i] = (uint8_t)(bits >> (56 - 8 * i));
    }
    sha256_update(c, pad, padlen + 8);
    for (int i = 0; i < 8; i++) {
        be32enc(out + 4 * i, c->h[i]);
    }
}

/* ---- HMAC-SHA256 and PBKDF2-HMAC-SHA256 (RFC 2104, RFC 8018) ------------------------------- */

typedef struct {
    sha256_ctx inner, outer; /* after the padded key */
} hmac_ctx;

static void
hmac_init(hmac_ctx *m, const uint8_t *key, size_t keylen)
{
    uint8_t k[64] = {0}, pad[64];
    if (keylen > 64) {
        sha256_ctx c;
        sha256_init(&c);
        sha256_update(&c, key, keylen);
        sha256_final(&c, k);
    }
    else {
        memcpy(k, key, keylen);
    }
    for (int i = 0; i < 64; i++) {
        pad[i] = k[i] ^ 0x36;
    }
    sha256_init(&m->inner);
    sha256_update(&m->inner, pad, 64);
    for (int i = 0; i < 64; i++) {
        pad[i] = k[i] ^ 0x5c;
    }
    sha256_init(&m->outer);
    sha256_update(&m->outer, pad, 64);
}

/* PBKDF2 with one iteration, the only count scrypt uses: T_i = HMAC(P, S || INT(i)). */
static void
pbkdf2_sha256_1(const uint8_t *pw, size_t pwlen, const uint8_t *salt, size_t saltlen,
                uint8_t *out, size_t outlen)
{
    hmac_ctx key;
    hmac_init(&key, pw, pwlen);
    for (uint32_t i = 1; outlen > 0; i++) {
        uint8_t ctr[4], u[32];
        hmac_ctx m = key;
        be32enc(ctr, i);
        sha256_update(&m.inner, salt, saltlen);
        sha256_update(&m.inner, ctr, 4);
        sha256_final(&m.inner, u);
        sha256_update(&m.outer, u, 32);
        sha256_final(&m.outer, u);
        size_t take = outlen < 32 ? outlen : 32;
        memcpy(out, u, take);
        out += take;
        outlen -= take;
    }
}

/* ---- scrypt (RFC 7914) --------------------------------------------------------------------- */

static void
salsa20_8(uint32_t b[16])
{
    uint32_t x[16];
    memcpy(x, b, sizeof(x));
    for (int i = 0; i < 8; i += 2) {
        x[4] ^= ROTL(x[0] + x[12], 7);   x[8] ^= ROTL(x[4] + x[0], 9);
        x[12] ^= ROTL(x[8] + x[4], 13);  x[0] ^= ROTL(x[12] + x[8], 18);
        x[9] ^= ROTL(x[5] + x[1], 7);    x[13] ^= ROTL(x[9] + x[5], 9);
        x[1] ^= ROTL(x[13] + x[9], 13);  x[5] ^= ROTL(x[1] + x[13], 18);
        x[14] ^= ROTL(x[10] + x[6], 7);  x[2] ^= ROTL(x[14] + x[10], 9);
        x[6] ^= ROTL(x[2] + x[14], 13);  x[10] ^= ROTL(x[6] + x[2], 18);
        x[3] ^= ROTL(x[15] + x[11], 7);  x[7] ^= ROTL(x[3] + x[15], 9);
        x[11] ^= ROTL(x[7] + x[3], 13);  x[15] ^= ROTL(x[11] + x[7], 18);
        x[1] ^= ROTL(x[0] + x[3], 7);    x[2] ^= ROTL(x[1] + x[0], 9);
        x[3] ^= ROTL(x[2] + x[1], 13);   x[0] ^= ROTL(x[3] + x[2], 18);
        x[6] ^= ROTL(x[5] + x[4], 7);    x[7] ^= ROTL(x[6] + x[5], 9);
        x[4] ^= ROTL(x[7] + x[6], 13);   x[5] ^= ROTL(x[4] + x[7], 18);
        x[11] ^= ROTL(x[10] + x[9], 7);  x[8] ^= ROTL(x[11] + x[10], 9);
        x[9] ^= ROTL(x[8] + x[11], 13);  x[10] ^= ROTL(x[9] + x[8], 18);
        x[12] ^= ROTL(x[15] + x[14], 7); x[13] ^= ROTL(x[12] + x[15], 9);
        x[14] ^= ROTL(x[13] + x[12], 13); x[15] ^= ROTL(x[14] + x[13], 18);
    }
    for (int i = 0; i < 16; i++) {
        b[i] += x[i];
    }
}

/* BlockMix_salsa20/8 of the 2r 64-byte blocks of b (32 r words), y as scratch. */
static void
blockmix(uint32_t *b, uint32_t *y, size_t r)
{
    uint32_t x[16];
    memcpy(x, &b[(2 * r - 1) * 16], 64);
    for (size_t i = 0; i < 2 * r; i++) {
        for (int k = 0; k < 16; k++) {
            x[k] ^= b[i * 16 + k];
        }
        salsa20_8(x);
        memcpy(&y[i * 16], x, 64);
    }
    for (size_t i = 0; i < r; i++) {
        memcpy(&b[i * 16], &y[2 * i * 16], 64);
        memcpy(&b[(i + r) * 16], &y[(2 * i + 1) * 16], 64);
    }
}

/* scryptROMix on one 128 r-byte block of B, in place; v: 32 r N words, xy: 64 r words. */
static void
romix(uint8_t *block, size_t r, uint64_t n, uint32_t *v, uint32_t *xy)
{
    uint32_t *x = xy, *y = xy + 32 * r;
    size_t words = 32 * r;
    for (size_t k = 0; k < words; k++) {
        x[k] = le32dec(block + 4 * k);
    }
    for (uint64_t i = 0; i < n; i++) {
        memcpy(&v[i * words], x, 128 * r);
        blockmix(x, y, r);
    }
    for (uint64_t i = 0; i < n; i++) {
        const uint32_t *last = &x[(2 * r - 1) * 16];
        uint64_t j = (((uint64_t)last[1] << 32) | last[0]) & (n - 1);
        for (size_t k = 0; k < words; k++) {
            x[k] ^= v[j * words + k];
        }
        blockmix(x, y, r);
    }
    for (size_t k = 0; k < words; k++) {
        le32enc(block + 4 * k, x[k]);
    }
}

/* ---- the Python function ------------------------------------------------------------------- */

#define SCRYPT_PR_MAX ((1 << 30) - 1)
#define SCRYPT_MAX_MEM (1024 * 1024 * 32) /* OpenSSL's default maxmem */

static int
unsigned_arg(PyObject *obj, const char *name, uint64_t *out)
{
    if (obj != Py_None && !PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "scrypt() argument '%s' must be int, not %.50s", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    unsigned long long v = obj == Py_None ? (unsigned long long)-1 : PyLong_AsUnsignedLongLong(obj);
    if (obj == Py_None || (v == (unsigned long long)-1 && PyErr_Occurred())) {
        PyErr_Format(PyExc_TypeError, "%s is required and must be an unsigned int", name);
        return -1;
    }
    *out = v;
    return 0;
}

static int
long_arg(PyObject *obj, long long *out)
{
    *out = PyLong_AsLongLong(obj); /* __index__ for non-int objects, as Argument Clinic's long */
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

PyDoc_STRVAR(scrypt_doc,
"scrypt($module, /, password, *, salt=None, n=None, r=None, p=None, maxmem=0, dklen=64)\n"
"--\n\n"
"scrypt password-based key derivation function.");

static PyObject *
scrypt(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"password", "salt", "n", "r", "p", "maxmem", "dklen", NULL};
    PyObject *password_obj, *salt_obj = NULL, *n_obj = Py_None, *r_obj = Py_None, *p_obj = Py_None;
    PyObject *maxmem_obj = NULL, *dklen_obj = NULL, *result = NULL;
    Py_buffer password = {0}, salt = {0};
    long long maxmem = 0, dklen = 64;
    uint64_t n, r, p;
    uint8_t *b = NULL;
    uint32_t *v = NULL, *xy = NULL;

    (void)module;
    if (PyTuple_GET_SIZE(args) > 1) { /* Argument Clinic's wording */
        PyErr_Format(PyExc_TypeError, "scrypt() takes exactly 1 positional argument (%zd given)",
                     PyTuple_GET_SIZE(args));
        return NULL;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|$OOOOOO:scrypt", kwlist, &password_obj,
                                     &salt_obj, &n_obj, &r_obj, &p_obj, &maxmem_obj, &dklen_obj)) {
        return NULL;
    }
    if (PyObject_GetBuffer(password_obj, &password, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (salt_obj == NULL) {
        PyErr_SetString(PyExc_TypeError, "salt is required");
        goto done;
    }
    if (PyObject_GetBuffer(salt_obj, &salt, PyBUF_SIMPLE) < 0) {
        goto done;
    }
    if (password.len > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "password is too long.");
        goto done;
    }
    if (salt.len > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "salt is too long.");
        goto done;
    }
    if (unsigned_arg(n_obj, "n", &n) < 0) {
        goto done;
    }
    if (n < 2 || (n & (n - 1))) {
        PyErr_SetString(PyExc_ValueError, "n must be a power of 2.");
        goto done;
    }
    if (unsigned_arg(r_obj, "r", &r) < 0 || unsigned_arg(p_obj, "p", &p) < 0) {
        goto done;
    }
    if ((maxmem_obj != NULL && long_arg(maxmem_obj, &maxmem) < 0) ||
        (dklen_obj != NULL && long_arg(dklen_obj, &dklen) < 0)) {
        goto done;
    }
    if (maxmem < 0 || maxmem > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "maxmem must be positive and smaller than %d", INT_MAX);
        goto done;
    }
    if (dklen < 1 || dklen > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "dklen must be greater than 0 and smaller than %d", INT_MAX);
        goto done;
    }
    /* OpenSSL's checks (EVP_PBE_scrypt_ex), in its order. */
    if (r == 0 || p == 0) {
        PyErr_SetString(PyExc_ValueError, "Invalid parameter combination for n, r, p, maxmem.");
        goto done;
    }
    uint64_t blen, vlen;
    int too_much = p > SCRYPT_PR_MAX / r || (16 * r <= 63 && n >= ((uint64_t)1 << (16 * r)));
    if (!too_much) {
        blen = p * 128 * r;
        too_much = blen > INT_MAX || n + 2 > (UINT64_MAX / (32 * sizeof(uint32_t))) / r;
    }
    if (!too_much) {
        vlen = 32 * r * (n + 2) * sizeof(uint32_t);
        too_much = blen + vlen > (uint64_t)(maxmem == 0 ? SCRYPT_MAX_MEM : maxmem);
    }
    if (too_much) {
        PyErr_SetString(PyExc_ValueError, "[digital envelope routines] memory limit exceeded");
        goto done;
    }
    /* blen + vlen <= INT_MAX: every size below fits in size_t on wasm32. */
    b = PyMem_RawMalloc((size_t)blen);
    v = PyMem_RawMalloc((size_t)(128 * r * n));
    xy = PyMem_RawMalloc((size_t)(256 * r));
    result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)dklen);
    if (b == NULL || v == NULL || xy == NULL || result == NULL) {
        Py_CLEAR(result);
        PyErr_NoMemory();
        goto done;
    }
    pbkdf2_sha256_1(password.buf, (size_t)password.len, salt.buf, (size_t)salt.len, b, (size_t)blen);
    for (uint64_t i = 0; i < p; i++) {
        romix(b + i * 128 * r, (size_t)r, n, v, xy);
    }
    pbkdf2_sha256_1(password.buf, (size_t)password.len, b, (size_t)blen,
                    (uint8_t *)PyBytes_AS_STRING(result), (size_t)dklen);

done:
    PyMem_RawFree(b);
    PyMem_RawFree(v);
    PyMem_RawFree(xy);
    if (salt.obj != NULL) {
        PyBuffer_Release(&salt);
    }
    PyBuffer_Release(&password);
    return result;
}

static PyMethodDef scrypt_methods[] = {
    {"scrypt", (PyCFunction)(void (*)(void))scrypt, METH_VARARGS | METH_KEYWORDS, scrypt_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef scrypt_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_eryx_scrypt",
    .m_doc = "hashlib.scrypt for the eryx guest (RFC 7914).",
    .m_size = 0,
    .m_methods = scrypt_methods,
};

PyMODINIT_FUNC
PyInit__eryx_scrypt(void)
{
    return PyModule_Create(&scrypt_module);
}
