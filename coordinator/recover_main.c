/* twopc-recover: being written. */
#include <stdio.h>
int main(void)
{
	fputs("twopc-recover: not built yet\n", stderr);
	return 2;
}
