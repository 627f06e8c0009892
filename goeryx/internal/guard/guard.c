//go:build linux && amd64 && cgo

// The memory-guard signal handler (see guard_linux_amd64.go and RATIONALE.md, "Why guest memory
// has guard regions instead of bounds checks"). It runs in front of whatever SIGSEGV handler was
// installed before it (Go's runtime, Python's faulthandler) and takes only the faults it can prove are out-of-bounds accesses of
// guest code: a kernel-generated fault whose address is inside a registered guarded reservation,
// whose PC is inside a code segment wazero generated, and whose stack pointer is on the
// compiled-code stack of the execution context published for that reservation. Those it turns
// into wazero's out-of-bounds exit; everything else goes to the previous handler unchanged.
// Only async-signal-safe work here: loads, stores, sigaction, raise.

#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <ucontext.h>

#include "guard.h"

// Execution-context layout of wazero's memory-guard ABI 1 (third_party/wazero, memory_guard.go;
// checked by wazero's TestMemoryGuardABI).
enum {
	EC_EXIT_CODE = 0,
	EC_ORIGINAL_FP = 16,
	EC_ORIGINAL_SP = 24,
	EC_STACK_BOTTOM = 40,
	EC_GO_CALL_RETURN_ADDRESS = 48,
	EC_SP_BEFORE_GO_CALL = 56,
	EC_FP_BEFORE_GO_CALL = 1152,
	EC_STACK_TOP = 1240,
	EXIT_CODE_MEMORY_OUT_OF_BOUNDS = 4,
};

struct reservation {
	uintptr_t base, end; // [base, end); base 0: free
	uintptr_t active;    // execution context last entered with this memory (wazero writes it)
};

static struct reservation reservations[GUARD_MAX_RESERVATIONS];
static int reservations_hw; // entries at or beyond it are free

static const uintptr_t (*code_segments)[2];
static int code_segment_entries;

static struct sigaction previous;          // the handler we are in front of
static struct sigaction original_previous; // the one found at the first installation
static int forwarded_fault;                // a fault was forwarded and the handler returned

#define LOAD(p) __atomic_load_n(&(p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n(&(p), (v), __ATOMIC_RELEASE)

static int in_wazero_code(uintptr_t pc) {
	for (int i = 0; i < code_segment_entries; i++) {
		uintptr_t start = LOAD(code_segments[i][0]);
		if (start != 0 && pc >= start && pc < LOAD(code_segments[i][1]))
			return 1;
	}
	return 0;
}

static void call_handler(const struct sigaction *sa, int sig, siginfo_t *info, void *ctx) {
	if (sa->sa_flags & SA_SIGINFO) {
		if (sa->sa_sigaction != NULL) {
			sa->sa_sigaction(sig, info, ctx);
			return;
		}
	} else if (sa->sa_handler != SIG_DFL && sa->sa_handler != SIG_IGN) {
		sa->sa_handler(sig);
		return;
	}
	// Default (or ignored, which the kernel does not honour for a fault): let the fault
	// happen again, or the signal be delivered again, with the default action.
	struct sigaction dfl;
	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	sigaction(sig, &dfl, NULL);
	if (info->si_code <= 0)
		raise(sig);
}

static void forward(int sig, siginfo_t *info, void *ctx) {
	// A handler that restores its predecessor and re-raises (faulthandler) finds us again when
	// we were re-installed in front of it (guard_ensure_front): its re-raised signal goes to
	// the handler we first found (Go's) instead of back to it, which would loop.
	if (info->si_code <= 0 && __atomic_exchange_n(&forwarded_fault, 0, __ATOMIC_ACQ_REL)) {
		call_handler(&original_previous, sig, info, ctx);
		return;
	}
	call_handler(&previous, sig, info, ctx);
	if (info->si_code > 0)
		__atomic_store_n(&forwarded_fault, 1, __ATOMIC_RELEASE);
}

static void handler(int sig, siginfo_t *info, void *ctx) {
	if (sig == SIGSEGV && info->si_code > 0) {
		ucontext_t *uc = ctx;
		greg_t *regs = uc->uc_mcontext.gregs;
		uintptr_t addr = (uintptr_t)info->si_addr;
		uintptr_t pc = (uintptr_t)regs[REG_RIP], sp = (uintptr_t)regs[REG_RSP];
		int hw = LOAD(reservations_hw);
		for (int i = 0; i < hw; i++) {
			struct reservation *r = &reservations[i];
			uintptr_t base = LOAD(r->base);
			if (base == 0 || addr < base || addr >= LOAD(r->end))
				continue;
			uintptr_t ec = LOAD(r->active);
			if (ec == 0 || !in_wazero_code(pc))
				break;
			uintptr_t bottom = *(uintptr_t *)(ec + EC_STACK_BOTTOM);
			uintptr_t top = *(uintptr_t *)(ec + EC_STACK_TOP);
			if (sp < bottom || sp > top)
				break;
			// What the compiled exit sequence does: record the exit code and where the
			// guest was (for the trap's stack trace), then return to the Go caller of the
			// entry point with its stack and frame pointers.
			*(uint32_t *)(ec + EC_EXIT_CODE) = EXIT_CODE_MEMORY_OUT_OF_BOUNDS;
			*(uintptr_t *)(ec + EC_SP_BEFORE_GO_CALL) = sp;
			*(uintptr_t *)(ec + EC_FP_BEFORE_GO_CALL) = (uintptr_t)regs[REG_RBP];
			*(uintptr_t *)(ec + EC_GO_CALL_RETURN_ADDRESS) = pc;
			uintptr_t go_sp = *(uintptr_t *)(ec + EC_ORIGINAL_SP);
			regs[REG_RBP] = (greg_t) * (uintptr_t *)(ec + EC_ORIGINAL_FP);
			regs[REG_RIP] = (greg_t) * (uintptr_t *)go_sp;
			regs[REG_RSP] = (greg_t)(go_sp + 8);
			return;
		}
	}
	forward(sig, info, ctx);
}

static int install(struct sigaction *old) {
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = handler;
	// Go's handler, which we may call, expects the signal stack and all signals blocked.
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
	sigfillset(&sa.sa_mask);
	return sigaction(SIGSEGV, &sa, old);
}

int guard_install(uintptr_t table, int entries) {
	code_segments = (const uintptr_t (*)[2])table;
	code_segment_entries = entries;
	struct sigaction old;
	if (install(&old) != 0)
		return -1;
	previous = old;
	original_previous = old;
	return 0;
}

int guard_ensure_front(void) {
	struct sigaction cur;
	if (sigaction(SIGSEGV, NULL, &cur) != 0)
		return -1;
	if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == handler)
		return 0;
	// Someone installed a handler after us (faulthandler.enable() after import): go in front
	// of it again, forwarding to it. The window between the two calls only matters to a
	// third party installing a handler at the same moment.
	struct sigaction old;
	if (install(&old) != 0)
		return -1;
	previous = old;
	return 1;
}

int guard_register(uintptr_t base, uintptr_t size) {
	for (int i = 0; i < GUARD_MAX_RESERVATIONS; i++) {
		struct reservation *r = &reservations[i];
		if (LOAD(r->base) == 0) {
			STORE(r->active, 0);
			STORE(r->end, base + size);
			STORE(r->base, base);
			if (i >= LOAD(reservations_hw))
				STORE(reservations_hw, i + 1);
			return i;
		}
	}
	return -1;
}

void guard_unregister(int i) {
	STORE(reservations[i].base, 0);
	STORE(reservations[i].end, 0);
	STORE(reservations[i].active, 0);
}

uintptr_t *guard_slot(int i) { return &reservations[i].active; }
