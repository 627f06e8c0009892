# Extra rules read after CPython's own Makefile (make -f Makefile -f reactor.mk ...): compile the
# ABI runtime with CPython's core flags and link python.wasm as a WASI reactor from the same
# objects as CPython's own python.wasm, with Programs/python.o replaced by eryx_runtime.o.
# Variables passed on the command line by runtime/build.sh:
#   ERYX_SRC       directory of eryx_runtime.c      ERYX_ABI   directory of eryx_abi.h
#   ERYX_OUT       output directory                 ERYX_MAX_MEMORY  bytes (max linear memory)
#   ERYX_CFLAGS    extra flags for eryx_runtime.c
#   ERYX_DYLINK    "yes": link for side modules (below)
comma := ,
# CPython's WASI default pins the initial memory to 20 MiB; let wasm-ld use the minimum
# (stack + data) instead: the interpreter grows its memory as needed.
ERYX_CORE_LDFLAGS = $(filter-out -Wl$(comma)--initial-memory=%,$(PY_CORE_LDFLAGS))

$(ERYX_OUT)/eryx_runtime.o: $(ERYX_SRC)/eryx_runtime.c $(ERYX_ABI)/eryx_abi.h $(PYTHON_HEADERS)
	$(CC) -c $(PY_CORE_CFLAGS) $(ERYX_CFLAGS) -I$(ERYX_ABI) -o $@ $(ERYX_SRC)/eryx_runtime.c

# hashlib.scrypt (the guest has no OpenSSL): a built-in module registered by eryx_runtime.c.
$(ERYX_OUT)/eryx_scrypt.o: $(ERYX_SRC)/eryx_scrypt.c $(PYTHON_HEADERS)
	$(CC) -c $(PY_CORE_CFLAGS) -o $@ $(ERYX_SRC)/eryx_scrypt.c

# Side modules (extension modules, goeryx/internal/dylink) bind to python.wasm's exports, as
# in the tool-conventions DynamicLinking ABI but without making the main module PIC (Debian's
# wasi-libc is not built PIC): the memory, the function table (growable, for the side modules'
# function pointers), the stack pointer, every default-visibility symbol (the CPython API) and
# the libc and compiler-rt functions and data that python.wasm contains anyway. wasi-libc is
# built with hidden visibility, so --export-dynamic leaves those out, and --export-if-defined
# would pull every archive member in: they are found by a first link's map file (what survived
# --gc-sections) and exported by name in the second link, which adds no code.
ERYX_LINK = $(LINKCC) $(ERYX_CORE_LDFLAGS) $(LINKFORSHARED) -mexec-model=reactor \
	    -Wl,--max-memory=$(ERYX_MAX_MEMORY) -Wl,--strip-debug
ERYX_LINK_INPUTS = $(ERYX_OUT)/eryx_runtime.o $(ERYX_OUT)/eryx_scrypt.o $(LINK_PYTHON_OBJS) $(LIBS) $(MODLIBS) $(SYSLIBS)
ERYX_DYLINK_LDFLAGS = -Wl,--export-dynamic -Wl,--export-table -Wl,--growable-table -Wl,--export=__stack_pointer
ERYX_LIBC_ARCHIVES = libc|libdl|libclang_rt[^/]*|libwasi-emulated[^/]*

$(ERYX_OUT)/python.wasm: $(ERYX_OUT)/eryx_runtime.o $(ERYX_OUT)/eryx_scrypt.o $(LINK_PYTHON_DEPS)
ifeq ($(ERYX_DYLINK),yes)
	$(ERYX_LINK) $(ERYX_DYLINK_LDFLAGS) -Wl,-Map=$(ERYX_OUT)/python.map -o $@.pre $(ERYX_LINK_INPUTS)
	llvm-nm --defined-only --extern-only -j "$$($(CC) -print-file-name=libc.a)" \
	    "$$($(CC) -print-file-name=libwasi-emulated-signal.a)" "$$($(CC) -print-libgcc-file-name)" \
	    | grep -v -e ':$$' -e '^$$' | sort -u > $(ERYX_OUT)/libc-symbols.txt
	awk '$$NF ~ /:\(/ { lib = ($$NF ~ /\/($(ERYX_LIBC_ARCHIVES))\.a\(/); next } \
	     lib && NF == 4 && $$NF !~ /[:(]/ { print $$NF }' $(ERYX_OUT)/python.map | sort -u \
	    | grep -Fxf $(ERYX_OUT)/libc-symbols.txt | sed 's/^/--export=/' > $(ERYX_OUT)/libc-exports.rsp
	$(ERYX_LINK) $(ERYX_DYLINK_LDFLAGS) -Wl,@$(ERYX_OUT)/libc-exports.rsp -o $@ $(ERYX_LINK_INPUTS)
	rm -f $@.pre $(ERYX_OUT)/python.map $(ERYX_OUT)/libc-symbols.txt
else
	$(ERYX_LINK) -o $@ $(ERYX_LINK_INPUTS)
endif

.PHONY: eryx-prereqs
# Everything the reactor link needs, without linking CPython's own command-line python.wasm.
eryx-prereqs: $(LINK_PYTHON_DEPS) pybuilddir.txt
