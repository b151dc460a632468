/* check_recover: being written. */
#include <stdio.h>
int main(void)
{
	puts("check_recover: not written yet: skipped");
	return 77;
}
