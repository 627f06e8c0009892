/* A side module using every kind of binding: main functions and data, GOT.func of main
 * functions with and without a table slot, its own data and function pointers, a constructor. */
extern int counter;
extern int get(void);
extern int apply(int (*f)(int), int x);
extern int dbl(int), neg(int);
static int triple(int x) { return 3 * x; }
int (*fp)(int) = triple;
int *cp = &counter;
int (*mainfp)(int) = dbl;
int (*negfp)(int) = neg;
int zeroed[64];
int ctor_ran;
int side_fn(void);
int (*own)(void) = side_fn;
__attribute__((constructor)) static void init(void) { ctor_ran = 40 + (zeroed[63] == 0) + (own == side_fn); }
/* 5 + 5 + 6 + 2 + (-1) + 1 + 42 = 60 */
int side_fn(void) {
    return *cp + get() + apply(fp, 2) + apply(mainfp, 1) + apply(negfp, 1) + (mainfp == dbl) + ctor_ran;
}
int bump(void) { return ++counter; }
