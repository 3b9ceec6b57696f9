/*
 * node.primitives._formatcheck: the last step of the strict decoder, in C.
 *
 * After msgpack decoded a payload and it re-encoded to the same bytes, only
 * int, bytes, str and arrays may remain (node/primitives/encoding.py): not nil, bool,
 * float, maps or extension types.  ``_reject_foreign_types`` walks the decoded
 * object in Python, about 5 us for one transaction; this walks it the same way
 * (an explicit stack of lists, each list's scalars in order before its nested
 * lists, last first), so both report the same first offender.
 *
 * foreign_type(obj) -> None, or the name to report ("bool/nil", "dict", "float", ...)
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

static PyMethodDef methods[] = {
    {"foreign_type", foreign_type, METH_O,
     "foreign_type(obj) -> None, or the name of the first value that is not int, bytes, "
     "str or a list of those"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "node.primitives._formatcheck",
    "The strict decoder's type walk, in C.", -1, methods,
};

PyMODINIT_FUNC PyInit__formatcheck(void) { return PyModule_Create(&module); }
