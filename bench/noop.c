// SPDX-License-Identifier: Apache-2.0
/* The exec benchmark's target: a static program that exits at once. */
int main(void)
{
	return 0;
}
