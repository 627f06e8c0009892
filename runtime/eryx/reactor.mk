# Extra rules read after CPython's own Makefile (make -f Makefile -f reactor.mk ...): compile the
# ABI runtime with CPython's core flags and link python.wasm as a WASI reactor from the same
# objects as CPython's own python.wasm, with Programs/python.o replaced by eryx_runtime.o.
# Variables passed on the command line by runtime/build.sh:
#   ERYX_SRC       directory of eryx_runtime.c      ERYX_ABI   directory of eryx_abi.h
#   ERYX_OUT       output directory                 ERYX_MAX_MEMORY  bytes (max linear memory)
#   ERYX_CFLAGS    extra flags for eryx_runtime.c
comma := ,
# CPython's WASI default pins the initial memory to 20 MiB; let wasm-ld use the minimum
# (stack + data) instead: the interpreter grows its memory as needed.
ERYX_CORE_LDFLAGS = $(filter-out -Wl$(comma)--initial-memory=%,$(PY_CORE_LDFLAGS))

$(ERYX_OUT)/eryx_runtime.o: $(ERYX_SRC)/eryx_runtime.c $(ERYX_ABI)/eryx_abi.h $(PYTHON_HEADERS)
	$(CC) -c $(PY_CORE_CFLAGS) $(ERYX_CFLAGS) -I$(ERYX_ABI) -o $@ $(ERYX_SRC)/eryx_runtime.c

# hashlib.scrypt (the guest has no OpenSSL): a built-in module registered by eryx_runtime.c.
$(ERYX_OUT)/eryx_scrypt.o: $(ERYX_SRC)/eryx_scrypt.c $(PYTHON_HEADERS)
	$(CC) -c $(PY_CORE_CFLAGS) -o $@ $(ERYX_SRC)/eryx_scrypt.c

$(ERYX_OUT)/python.wasm: $(ERYX_OUT)/eryx_runtime.o $(ERYX_OUT)/eryx_scrypt.o $(LINK_PYTHON_DEPS)
	$(LINKCC) $(ERYX_CORE_LDFLAGS) $(LINKFORSHARED) -mexec-model=reactor \
	    -Wl,--max-memory=$(ERYX_MAX_MEMORY) -Wl,--strip-debug \
	    -o $@ $(ERYX_OUT)/eryx_runtime.o $(ERYX_OUT)/eryx_scrypt.o $(LINK_PYTHON_OBJS) $(LIBS) $(MODLIBS) $(SYSLIBS)

.PHONY: eryx-prereqs
# Everything the reactor link needs, without linking CPython's own command-line python.wasm.
eryx-prereqs: $(LINK_PYTHON_DEPS) pybuilddir.txt
