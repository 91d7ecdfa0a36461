/* Placeholder until the state store benchmark lands. */
#include "state.h"

int main(void)
{
	return 0;
}
