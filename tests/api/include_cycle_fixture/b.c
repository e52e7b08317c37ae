/* b.c - fixture: b uses a, a includes b: a cycle */
#include "b.h"
#include "a.h"
int sbx__b(void) {
  return sbx__a();
}
