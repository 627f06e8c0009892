#include <stdint.h>

#define GUARD_MAX_RESERVATIONS 16384

int guard_install(uintptr_t table, int entries);
int guard_ensure_front(void);
int guard_register(uintptr_t base, uintptr_t size);
void guard_unregister(int i);
uintptr_t *guard_slot(int i);
