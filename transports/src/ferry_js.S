	.section .rodata
	.global fy_ferry_js
	.hidden fy_ferry_js
	.type fy_ferry_js, @object
fy_ferry_js:
	.incbin "ferry.js"
	.global fy_ferry_js_end
	.hidden fy_ferry_js_end
fy_ferry_js_end:
	.byte 0
	.section .note.GNU-stack,"",@progbits
