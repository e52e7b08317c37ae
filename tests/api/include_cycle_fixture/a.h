/* a.h - fixture: a module whose header includes b.h */
#include "b.h"
int sbx__a(void);
