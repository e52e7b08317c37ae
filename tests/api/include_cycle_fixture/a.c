/* a.c - fixture */
#include "a.h"
int sbx__a(void) {
  return 0;
}
