/* b.h - fixture */
int sbx__b(void);
