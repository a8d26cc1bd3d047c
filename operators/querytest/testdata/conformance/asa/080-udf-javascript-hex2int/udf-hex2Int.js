// Convert Hex value to integer.
function main(hexValue) {
    return parseInt(hexValue, 16);
}
