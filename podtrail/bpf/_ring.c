/* podtrail.bpf._ring: libbpf's ring-buffer sample callback in C, collecting a batch.
 *
 * Why: through ctypes, each sample cost a CFUNCTYPE callback into Python, a bytes copy and a
 * hand-over call (6.3 us of agent CPU per exec). Here ring_buffer__new gets CALLBACK, a C
 * function, with a Batch object as its context; ring_buffer__consume runs through ctypes'
 * PyDLL (the GIL held), so the callback may use the C API. Per sample it appends to the batch's
 * list either the event a C decoder made (a capsule from the decoder's ``sample_fn``, e.g.
 * podtrail.bpf._process.Decoder) or, for samples without a C decoder or that it leaves to
 * Python, the sample's bytes. Python then takes the list once per consume and hands the
 * events over in one call.
 *
 * Reference: RingBuffer in podtrail/bpf/libbpf.py (its ctypes callback, kept as the fallback,
 * fills the same list with bytes). A sample is never lost silently: one that cannot be
 * stored (no memory) is counted in the batch's errors. Past ``cap`` items the callback stops
 * the consume (a negative return, STOPPED) so a batch stays bounded; the sample is kept. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stddef.h>

/* The contract with a decoder module (declared in both files; the capsule name guards it). */
#define SAMPLE_DECODER_CAPSULE "podtrail.bpf.sample_decoder"
typedef PyObject *(*sample_decoder)(PyObject *decoder, const char *raw, size_t size);

#define STOPPED (-EXFULL) /* the batch is full: consume returns this, Python takes and goes on */

typedef struct {
    PyObject_HEAD
    PyObject *decoder; /* or NULL */
    sample_decoder decode;
    PyObject *items;
    Py_ssize_t cap;
    Py_ssize_t errors;
    Py_ssize_t left; /* items that are bytes (for the Python decoder) */
} Batch;

static int sample(void *ctx, void *data, size_t size)
{
    PyGILState_STATE gil = PyGILState_Ensure(); /* held already through PyDLL: a counter */
    Batch *b = ctx;
    PyObject *item = NULL;
    if (size > PY_SSIZE_T_MAX || b->items == NULL) { /* (a Batch used before __init__) */
        b->errors++;
        PyGILState_Release(gil);
        return 0;
    }
    if (b->decode != NULL) {
        item = b->decode(b->decoder, data, size);
        if (item == NULL && PyErr_Occurred())
            PyErr_Clear(); /* the Python decoder gets the bytes (and counts what it refuses) */
    }
    int left = item == NULL;
    if (left)
        item = PyBytes_FromStringAndSize(data, (Py_ssize_t)size);
    if (item == NULL || PyList_Append(b->items, item) < 0) {
        PyErr_Clear();
        b->errors++;
    } else {
        b->left += left;
    }
    Py_XDECREF(item);
    int rc = PyList_GET_SIZE(b->items) >= b->cap ? STOPPED : 0;
    PyGILState_Release(gil);
    return rc;
}

static int Batch_init(Batch *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"decoder", "cap", NULL};
    PyObject *decoder = Py_None;
    Py_ssize_t cap = 4096;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|On:Batch", names, &decoder, &cap))
        return -1;
    if (cap < 1) {
        PyErr_SetString(PyExc_ValueError, "cap >= 1");
        return -1;
    }
    sample_decoder fn = NULL;
    if (decoder != Py_None) {
        PyObject *capsule = PyObject_GetAttrString(decoder, "sample_fn");
        if (capsule == NULL)
            return -1;
        fn = (sample_decoder)PyCapsule_GetPointer(capsule, SAMPLE_DECODER_CAPSULE);
        Py_DECREF(capsule);
        if (fn == NULL)
            return -1;
    }
    PyObject *items = PyList_New(0);
    if (items == NULL)
        return -1;
    Py_XSETREF(self->items, items);
    Py_XSETREF(self->decoder, decoder == Py_None ? NULL : Py_NewRef(decoder));
    self->decode = fn;
    self->cap = cap;
    self->errors = self->left = 0;
    return 0;
}

/* take() -> (items, errors) since the last take; the batch starts empty again */
static PyObject *Batch_take(Batch *self, PyObject *unused)
{
    if (self->items == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Batch used before __init__");
        return NULL;
    }
    PyObject *fresh = PyList_New(0), *errors = PyLong_FromSsize_t(self->errors), *left = PyLong_FromSsize_t(self->left);
    PyObject *out = PyTuple_New(3);
    if (fresh == NULL || errors == NULL || left == NULL || out == NULL) {
        Py_XDECREF(fresh);
        Py_XDECREF(errors);
        Py_XDECREF(left);
        Py_XDECREF(out);
        return NULL;
    }
    PyTuple_SET_ITEM(out, 0, self->items); /* the batch's reference moves into the tuple */
    PyTuple_SET_ITEM(out, 1, errors);
    PyTuple_SET_ITEM(out, 2, left);
    self->items = fresh;
    self->errors = self->left = 0;
    return out;
}

static int Batch_traverse(Batch *self, visitproc visit, void *arg)
{
    Py_VISIT(self->decoder);
    Py_VISIT(self->items);
    return 0;
}

static int Batch_clear(Batch *self)
{
    Py_CLEAR(self->decoder);
    Py_CLEAR(self->items);
    self->decode = NULL;
    return 0;
}

static void Batch_dealloc(Batch *self)
{
    PyObject_GC_UnTrack(self);
    Batch_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Batch_methods[] = {
    {"take", (PyCFunction)Batch_take, METH_NOARGS, "take() -> (items, errors, left): collected since the last take; left: how many items are bytes"},
    {NULL},
};

static PyTypeObject BatchType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "podtrail.bpf._ring.Batch",
    .tp_basicsize = sizeof(Batch),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Batch(decoder=None, cap=4096): what CALLBACK collects (its ctx is this object's address)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Batch_init,
    .tp_dealloc = (destructor)Batch_dealloc,
    .tp_traverse = (traverseproc)Batch_traverse,
    .tp_clear = (inquiry)Batch_clear,
    .tp_methods = Batch_methods,
};

/* for tests: what CALLBACK does with one sample, without libbpf */
static PyObject *feed(PyObject *mod, PyObject *args)
{
    PyObject *batch;
    Py_buffer raw;
    if (!PyArg_ParseTuple(args, "O!y*:feed", &BatchType, &batch, &raw))
        return NULL;
    int rc = sample(batch, raw.buf, (size_t)raw.len);
    PyBuffer_Release(&raw);
    return PyLong_FromLong(rc);
}

static PyMethodDef methods[] = {
    {"feed", feed, METH_VARARGS, "feed(batch, raw) -> the callback's return (0 or STOPPED), as libbpf would call it"},
    {NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "podtrail.bpf._ring",
                                    "libbpf ring-buffer sample callback in C, collecting batches", -1, methods};

PyMODINIT_FUNC PyInit__ring(void)
{
    if (PyType_Ready(&BatchType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Batch", (PyObject *)&BatchType) < 0 ||
        PyModule_AddObject(m, "CALLBACK", PyLong_FromVoidPtr((void *)sample)) < 0 ||
        PyModule_AddIntConstant(m, "STOPPED", STOPPED) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
