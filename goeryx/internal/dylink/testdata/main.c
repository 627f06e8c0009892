/* The main module of dylink's tests: exports what side modules bind to, like python.wasm. */
#include <stdlib.h>
#include <string.h>
int counter = 5;
int get(void) { return counter; }
int apply(int (*f)(int), int x) { return f(x); }
int dbl(int x) { return 2 * x; }
int (*dbl_in_table)(int) = dbl; /* dbl has a slot in the main table */
int neg(int x) { return -x; }   /* neg has none: a side module's GOT.func.neg needs a new slot */
void *test_alloc(int size) { void *p = malloc(size); memset(p, 0xAB, size); return p; }
int call_ptr(int (*f)(void)) { return f(); }
int call_ptr1(int (*f)(int), int x) { return f(x); }
