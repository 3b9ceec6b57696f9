/*
 * node.consensus._sigbatch: verify a list of BIP340 signatures in ONE release of the GIL.
 *
 * coincurve verifies one signature per call and releases the GIL for each; a
 * verifying thread must then win the GIL back after every signature (~65 us),
 * which it cannot while another thread runs Python (the "GIL convoy",
 * docs/design.md).  This loop calls the same libsecp256k1 functions, the ones
 * linked into coincurve's own cffi module (their addresses come from
 * node/consensus/sigbatch.py), for a whole chunk without the GIL.  No second copy of
 * libsecp256k1 is built or loaded.
 *
 * verify(ctx, parse, verify, checks) -> index of the first invalid check, or -1
 *   ctx, parse, verify: addresses (int) of coincurve's verification context,
 *     secp256k1_xonly_pubkey_parse and secp256k1_schnorrsig_verify;
 *   checks: a sequence of (x-only pubkey (32 bytes), signature (64), message (32)).
 * A check whose fields are not bytes of those sizes is invalid, as in
 * node.primitives.crypto.verify_schnorr.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct { unsigned char data[64]; } xonly_pubkey;   /* secp256k1_xonly_pubkey */
typedef int (*parse_fn)(const void *ctx, xonly_pubkey *pubkey, const unsigned char *input32);
typedef int (*verify_fn)(const void *ctx, const unsigned char *sig64, const unsigned char *msg,
                         size_t msglen, const xonly_pubkey *pubkey);

enum { PUB = 32, SIG = 64, MSG = 32, ROW = PUB + SIG + MSG };

/* Copy one field if it is a bytes object of exactly ``size`` bytes. */
static int take(PyObject *item, Py_ssize_t i, Py_ssize_t size, unsigned char *out) {
    PyObject *field = PyTuple_GET_ITEM(item, i);
    if (!PyBytes_Check(field) || PyBytes_GET_SIZE(field) != size)
        return 0;
    memcpy(out, PyBytes_AS_STRING(field), (size_t)size);
    return 1;
}

static PyObject *sigbatch_verify(PyObject *self, PyObject *args) {
    unsigned long long ctx_addr, parse_addr, verify_addr;
    PyObject *checks;
    if (!PyArg_ParseTuple(args, "KKKO", &ctx_addr, &parse_addr, &verify_addr, &checks))
        return NULL;
    PyObject *seq = PySequence_Fast(checks, "checks must be a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    unsigned char *rows = malloc(n > 0 ? (size_t)n * ROW : 1);
    if (rows == NULL) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    /* Copy the inputs while holding the GIL; a malformed check ends the batch there. */
    Py_ssize_t usable = n;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, k);
        unsigned char *row = rows + (size_t)k * ROW;
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3 || !take(item, 0, PUB, row)
                || !take(item, 1, SIG, row + PUB) || !take(item, 2, MSG, row + PUB + SIG)) {
            usable = k;
            break;
        }
    }
    Py_DECREF(seq);
    const void *ctx = (const void *)(uintptr_t)ctx_addr;
    parse_fn parse = (parse_fn)(uintptr_t)parse_addr;
    verify_fn verify = (verify_fn)(uintptr_t)verify_addr;
    Py_ssize_t bad = -1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < usable; k++) {
        const unsigned char *row = rows + (size_t)k * ROW;
        xonly_pubkey pubkey;
        if (!parse(ctx, &pubkey, row) || !verify(ctx, row + PUB, row + PUB + SIG, MSG, &pubkey)) {
            bad = k;
            break;
        }
    }
    Py_END_ALLOW_THREADS
    free(rows);
    if (bad < 0 && usable < n)
        bad = usable;
    return PyLong_FromSsize_t(bad);
}

static PyMethodDef methods[] = {
    {"verify", sigbatch_verify, METH_VARARGS,
     "verify(ctx, parse, verify, checks) -> index of the first invalid check, or -1"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "node.consensus._sigbatch",
    "BIP340 verification of a whole batch in one release of the GIL.", -1, methods,
};

PyMODINIT_FUNC PyInit__sigbatch(void) { return PyModule_Create(&module); }
