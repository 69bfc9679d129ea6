/* asyncify_kit.sql._rowcore: the optional C core of `Row`.
 *
 * A row is two references: the result's shared name-to-position table and the driver's
 * record. Built from Python, a row costs a call of `Row.__init__` (a Python frame) and two
 * slot stores, about 150-250 ns; for a 100-row `fetch_all` that is 15-25 us, more than the
 * whole facade costs besides. This module gives `Row` a C base holding the two references
 * and `rows_of`, which builds all the rows of a result in one C loop (about 40 ns a row).
 *
 * Everything else about `Row` (mapping, attribute and index access, equality, repr,
 * pickling) stays in Python, in _row.py, which falls back to a pure-Python base when this
 * module is missing or ASYNCIFY_KIT_NO_EXTENSIONS is set. Both bases pass the same tests.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h> /* offsetof: structmember.h brought it up to 3.11, Python.h may not */

#if PY_VERSION_HEX < 0x030C0000
#include <structmember.h>
#define Py_T_OBJECT_EX T_OBJECT_EX
#define Py_READONLY READONLY
#endif

typedef struct {
    PyObject_HEAD
    PyObject *keys;   /* Mapping[str, int], shared by the rows of one result */
    PyObject *values; /* the driver's record (a tuple, an asyncpg Record, ...) */
} RowBaseObject;

static int
rowbase_traverse(RowBaseObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->keys);
    Py_VISIT(self->values);
    return 0;
}

static int
rowbase_clear(RowBaseObject *self)
{
    Py_CLEAR(self->keys);
    Py_CLEAR(self->values);
    return 0;
}

static void
rowbase_dealloc(RowBaseObject *self)
{
    /* a static type: a heap subclass's subtype_dealloc releases the type reference */
    PyObject_GC_UnTrack(self);
    rowbase_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
rowbase_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"keys", "values", NULL};
    PyObject *keys, *values;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO:Row", kwlist, &keys, &values)) {
        return NULL;
    }
    RowBaseObject *self = (RowBaseObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    Py_INCREF(keys);
    self->keys = keys;
    Py_INCREF(values);
    self->values = values;
    return (PyObject *)self;
}

static PyMemberDef rowbase_members[] = {
    {"_keys", Py_T_OBJECT_EX, offsetof(RowBaseObject, keys), Py_READONLY,
     "The name-to-position table, shared by the rows of one result."},
    {"_values", Py_T_OBJECT_EX, offsetof(RowBaseObject, values), Py_READONLY,
     "The driver's record: the values in column order."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject RowBaseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "asyncify_kit.sql._rowcore.RowBase",
    .tp_doc = "RowBase(keys, values): the two references a Row holds.",
    .tp_basicsize = sizeof(RowBaseObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = rowbase_new,
    .tp_dealloc = (destructor)rowbase_dealloc,
    .tp_traverse = (traverseproc)rowbase_traverse,
    .tp_clear = (inquiry)rowbase_clear,
    .tp_members = rowbase_members,
};

PyDoc_STRVAR(rows_of_doc,
"rows_of(cls, keys, records) -> list\n\n"
"One *cls* instance (a RowBase subclass) per record, all sharing *keys*; each keeps its\n"
"record as it is.");

static PyObject *
rows_of(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "rows_of() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *cls_obj = args[0];
    PyObject *keys = args[1];
    if (!PyType_Check(cls_obj) || !PyType_IsSubtype((PyTypeObject *)cls_obj, &RowBaseType)) {
        PyErr_SetString(PyExc_TypeError, "rows_of() needs a RowBase subclass");
        return NULL;
    }
    PyTypeObject *cls = (PyTypeObject *)cls_obj;
    PyObject *records = PySequence_Fast(args[2], "rows_of() needs a sequence of records");
    if (records == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(records);
    PyObject *rows = PyList_New(n);
    if (rows == NULL) {
        Py_DECREF(records);
        return NULL;
    }
    PyObject **items = PySequence_Fast_ITEMS(records);
    for (Py_ssize_t i = 0; i < n; i++) {
        RowBaseObject *row = (RowBaseObject *)cls->tp_alloc(cls, 0);
        if (row == NULL) {
            Py_DECREF(rows);
            Py_DECREF(records);
            return NULL;
        }
        Py_INCREF(keys);
        row->keys = keys;
        Py_INCREF(items[i]);
        row->values = items[i];
        PyList_SET_ITEM(rows, i, (PyObject *)row);
    }
    Py_DECREF(records);
    return rows;
}

static PyMethodDef rowcore_methods[] = {
    {"rows_of", (PyCFunction)(void (*)(void))rows_of, METH_FASTCALL, rows_of_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef rowcore_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "asyncify_kit.sql._rowcore",
    .m_doc = "The optional C core of asyncify_kit.sql.Row.",
    .m_size = -1,
    .m_methods = rowcore_methods,
};

PyMODINIT_FUNC
PyInit__rowcore(void)
{
    if (PyType_Ready(&RowBaseType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&rowcore_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&RowBaseType);
    if (PyModule_AddObject(module, "RowBase", (PyObject *)&RowBaseType) < 0) {
        Py_DECREF(&RowBaseType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
