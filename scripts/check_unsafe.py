import pathlib,re,sys
bad=0;total=0
for p in sorted(pathlib.Path('src').rglob('*.rs')):
    lines=p.read_text().splitlines()
    for i,l in enumerate(lines):
        code=l.split('//')[0]
        if re.search(r'\bunsafe\b',code):
            total+=1
            # look upward through the comment/attribute block and the statement start
            ok='SAFETY' in l
            j=i-1
            while not ok and j>=0 and j>=i-8:
                s=lines[j].strip()
                if 'SAFETY' in s: ok=True;break
                if s.startswith('//') or s.startswith('#[') or s=='' : j-=1; continue
                # continuation of a statement
                if not s.endswith((';','}','{')): j-=1; continue
                break
            if not ok:
                bad+=1; print(f"{p}:{i+1}: {l.strip()}")
print(total,bad,file=sys.stderr)
