/*
 * node.primitives._formatcheck: the first and the last step of the strict decoder, in C.
 *
 * After msgpack decoded a payload and it re-encoded to the same bytes, only
 * int, bytes, str and arrays may remain (node/primitives/encoding.py): not nil, bool,
 * float, maps or extension types.  ``_reject_foreign_types`` walks the decoded
 * object in Python, about 5 us for one transaction; this walks it the same way
 * (an explicit stack of lists, each list's scalars in order before its nested
 * lists, last first), so both report the same first offender.
 *
 * foreign_type(obj) -> None, or the name to report ("bool/nil", "dict", "float", ...)
 *
 * exceeded_depth(data, max_values) is the step *before* msgpack builds anything: one pass
 * over the bytes that counts the values at each nesting depth (an array's count is added
 * at its header, before its elements are read) and stops at the first depth d whose count
 * passes max_values[d - 1] (the top value is depth 0; deeper than len(max_values) allows
 * none).  It returns that depth, or None; it raises ValueError for bytes that are not one
 * value of the format (encoding.py: ``_exceeded_depth_python`` is the same pass).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *offender(PyObject *item) {
    if (item == Py_None || PyBool_Check(item))
        return PyUnicode_FromString("bool/nil");
    return PyUnicode_FromString(Py_TYPE(item)->tp_name);
}

static int scalar_ok(PyObject *item) {
    return PyLong_CheckExact(item) || PyBytes_CheckExact(item) || PyUnicode_CheckExact(item);
}

static PyObject *foreign_type(PyObject *self, PyObject *obj) {
    if (!PyList_CheckExact(obj)) {
        if (scalar_ok(obj))
            Py_RETURN_NONE;
        return offender(obj);
    }
    Py_ssize_t cap = 64, top = 0;
    PyObject **stack = PyMem_Malloc(cap * sizeof(PyObject *));
    if (stack == NULL)
        return PyErr_NoMemory();
    stack[top++] = obj;
    PyObject *result = NULL;    /* the first offender (which may itself be None) */
    while (top > 0 && result == NULL) {
        PyObject *list = stack[--top];
        Py_ssize_t n = PyList_GET_SIZE(list);
        for (Py_ssize_t k = 0; k < n; k++) {
            PyObject *item = PyList_GET_ITEM(list, k);
            if (PyList_CheckExact(item)) {
                if (top == cap) {
                    PyObject **grown = PyMem_Realloc(stack, 2 * cap * sizeof(PyObject *));
                    if (grown == NULL) {
                        PyMem_Free(stack);
                        return PyErr_NoMemory();
                    }
                    stack = grown;
                    cap *= 2;
                }
                stack[top++] = item;
            } else if (!scalar_ok(item)) {
                result = item;
                break;
            }
        }
    }
    PyMem_Free(stack);
    if (result == NULL)
        Py_RETURN_NONE;
    return offender(result);
}

/* Bytes of the scalar whose first byte is at data[pos] (header included), or -1 for a
 * marker that is not part of the format; *why names it. */
static Py_ssize_t scalar_size(const unsigned char *data, Py_ssize_t pos, Py_ssize_t n,
                              const char **why) {
    unsigned char b = data[pos];
    Py_ssize_t head, len;
    if (b <= 0x7f || b >= 0xe0)
        return 1;                                   /* fixint */
    if (b >= 0xa0 && b <= 0xbf)
        return 1 + (b & 0x1f);                      /* fixstr */
    switch (b) {
    case 0xcc: case 0xd0: return 2;
    case 0xcd: case 0xd1: return 3;
    case 0xce: case 0xd2: return 5;
    case 0xcf: case 0xd3: return 9;
    case 0xc4: case 0xd9: head = 2; break;         /* bin8, str8 */
    case 0xc5: case 0xda: head = 3; break;         /* bin16, str16 */
    case 0xc6: case 0xdb: head = 5; break;         /* bin32, str32 */
    default:
        *why = (b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf ? "map"
             : b == 0xc0 || b == 0xc2 || b == 0xc3 ? "bool/nil"
             : b == 0xca || b == 0xcb ? "float"
             : b == 0xc1 ? "reserved marker" : "ext";
        return -1;
    }
    if (n - pos < head) {
        *why = "truncated";
        return -1;
    }
    len = 0;
    for (Py_ssize_t k = 1; k < head; k++)
        len = (len << 8) | data[pos + k];
    return head + len;
}

#define MAX_LIMIT_DEPTHS 64     /* depths a caller may bound: far beyond any message */

static PyObject *exceeded_depth(PyObject *self, PyObject *args) {
    Py_buffer view;
    PyObject *limits_obj;
    if (!PyArg_ParseTuple(args, "y*O!", &view, &PyTuple_Type, &limits_obj))
        return NULL;
    Py_ssize_t depths = PyTuple_GET_SIZE(limits_obj);
    unsigned long long limits[MAX_LIMIT_DEPTHS], counts[MAX_LIMIT_DEPTHS];
    unsigned long long remaining[MAX_LIMIT_DEPTHS + 1];   /* values left in each open array */
    const char *why = NULL;
    long result = 0;
    if (depths > MAX_LIMIT_DEPTHS) {
        PyBuffer_Release(&view);
        return PyErr_Format(PyExc_ValueError, "at most %d depths", MAX_LIMIT_DEPTHS);
    }
    for (Py_ssize_t k = 0; k < depths; k++) {
        limits[k] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(limits_obj, k));
        if (PyErr_Occurred()) {
            PyBuffer_Release(&view);
            return NULL;
        }
        counts[k] = 0;
    }
    const unsigned char *data = view.buf;
    Py_ssize_t n = view.len, pos = 0, top = 0;
    remaining[0] = 1;                               /* the one top-level value */
    while (top >= 0 && result == 0 && why == NULL) {
        if (remaining[top] == 0) {
            top--;
            continue;
        }
        if (pos >= n) {
            why = "truncated";
            break;
        }
        remaining[top]--;
        unsigned char b = data[pos];
        unsigned long long count;
        if (b >= 0x90 && b <= 0x9f) {
            count = b & 0x0f;
            pos += 1;
        } else if (b == 0xdc || b == 0xdd) {
            Py_ssize_t head = b == 0xdc ? 3 : 5;
            if (n - pos < head) {
                why = "truncated";
                break;
            }
            count = 0;
            for (Py_ssize_t k = 1; k < head; k++)
                count = (count << 8) | data[pos + k];
            pos += head;
        } else {
            Py_ssize_t size = scalar_size(data, pos, n, &why);
            if (size < 0)
                break;
            if (n - pos < size) {
                why = "truncated";
                break;
            }
            pos += size;
            continue;
        }
        if (count == 0)
            continue;
        Py_ssize_t child = top + 1;                 /* the depth of the array's elements */
        if (child > depths) {
            result = (long)child;
            break;
        }
        counts[child - 1] += count;
        if (counts[child - 1] > limits[child - 1]) {
            result = (long)child;
            break;
        }
        if (count > (unsigned long long)(n - pos)) {    /* each element takes a byte or more */
            why = "truncated";
            break;
        }
        remaining[++top] = count;
    }
    if (result == 0 && why == NULL && pos != n)
        why = "trailing bytes";
    PyBuffer_Release(&view);
    if (result != 0)
        return PyLong_FromLong(result);
    if (why != NULL)
        return PyErr_Format(PyExc_ValueError, "%s", why);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"foreign_type", foreign_type, METH_O,
     "foreign_type(obj) -> None, or the name of the first value that is not int, bytes, "
     "str or a list of those"},
    {"exceeded_depth", exceeded_depth, METH_VARARGS,
     "exceeded_depth(data, max_values) -> None, or the first depth whose count of values "
     "passes its limit; ValueError for bytes that are not one value of the format"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "node.primitives._formatcheck",
    "The strict decoder's value count and type walk, in C.", -1, methods,
};

PyMODINIT_FUNC PyInit__formatcheck(void) { return PyModule_Create(&module); }
